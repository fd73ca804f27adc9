"""Public API of the engine.  Everything a user imports comes from here.

- ``connect`` / ``shutdown``: an embedded local Ray cluster, or an existing one.
- MapReduce: ``MapReduceJob`` (+ ``TextInput``, ``ParquetInput``, ``TableInput``,
  ``JobOptions``, ``GroupByAggregate``), run with ``submit`` (Ray) or ``run_local``.
- Reliability toolkit: ``RetryPolicy``, ``CircuitBreaker``, ``DeadLetterStore``, ...
"""

from engine.cluster import ClusterInfo, connect, shutdown
from engine.io.output import OutputExistsError
from engine.io.splits import InputNotFoundError
from engine.kernels.text import count_words, split_words
from engine.mapreduce.aggregate import GroupByAggregate
from engine.mapreduce.chaos import MasterChaos, WorkerChaos
from engine.mapreduce.counters import increment_counter
from engine.mapreduce.handle import ChaosPlan, JobHandle, submit
from engine.mapreduce.local import run_local
from engine.mapreduce.master import JobFailedError
from engine.mapreduce.result import JobResult
from engine.mapreduce.spec import JobOptions, JobSpecError, MapReduceJob, ParquetInput, TableInput, TextInput
from engine.mapreduce.tasks import TooManyBadRecordsError
from engine.reliability import (CircuitBreaker, CircuitBreakerRegistry, CircuitOpenError, DeadLetterStore,
                                RateLimitedError, RateLimiter, ReplayReport, RetryPolicy, TokenBucket,
                                TransientError, is_transient)

__all__ = [
    "ChaosPlan", "CircuitBreaker", "CircuitBreakerRegistry", "CircuitOpenError", "ClusterInfo", "DeadLetterStore",
    "GroupByAggregate", "InputNotFoundError", "JobFailedError", "JobHandle", "JobOptions", "JobResult",
    "JobSpecError", "MapReduceJob", "MasterChaos", "OutputExistsError", "ParquetInput", "RateLimitedError",
    "RateLimiter", "ReplayReport", "RetryPolicy", "TableInput", "TextInput", "TokenBucket",
    "TooManyBadRecordsError", "TransientError", "WorkerChaos", "connect", "count_words", "increment_counter",
    "is_transient", "run_local", "shutdown", "split_words", "submit",
]
