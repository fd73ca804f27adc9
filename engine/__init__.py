"""Public API of the engine.  Everything a user imports comes from here.

- ``connect`` / ``shutdown``: an embedded local Ray cluster, or an existing one.
- MapReduce: ``MapReduceJob`` (+ ``TextInput``, ``ParquetInput``, ``TableInput``,
  ``JobOptions``, ``GroupByAggregate``), run with ``submit`` (Ray) or ``run_local``.
- Pipes and filters: ``Pipeline`` of ``Stage``s from a source to a sink.
- Scatter-gather: ``ScatterGather`` served by ``serve`` (Ray shard actors or inline).
- Lambda architecture: ``LambdaArchitecture`` (master log, batch, speed, serving layers).
- Reliability toolkit: ``RetryPolicy``, ``CircuitBreaker``, ``DeadLetterStore``, ...
"""

from engine.cluster import ClusterInfo, connect, shutdown
from engine.errors import InputNotFoundError, OutputExistsError
from engine.io.sources import ParquetSource, TableSource, TextSource
from engine.kernels.text import count_words, split_words
from engine.common.combine import GroupByAggregate
from engine.testing.chaos import MasterChaos, WorkerChaos
from engine.mapreduce.counters import increment_counter
from engine.mapreduce.handle import ChaosPlan, JobHandle, submit
from engine.mapreduce.local import run_local
from engine.errors import JobFailedError
from engine.mapreduce.result import JobResult
from engine.mapreduce.spec import JobOptions, MapReduceJob
from engine.errors import SpecError, TooManyBadRecordsError
from engine.lambda_arch import (AdEventOracle, Answer, IngestAck, LambdaArchitecture, LambdaOptions, MasterLog,
                                QueryFailedError)
from engine.pipeline import (AutoscalePolicy, CallbackSink, CollectSink, IteratorSource, LiveFeed,
                             LocalPipelineExecutor, ParquetSink, Pipeline, PipelineFailedError,
                             PipelineHandle, PipelineOptions, PipelineResult, RayPipelineExecutor, Stage,
                             StageMetrics, replay_dead_letters)
from engine.scatter_gather import (GatherResult, InlineScatterGather, NotEnoughRepliesError, RayScatterGather,
                                   RequestExpiredError, ScatterGather, ScatterGatherError, ScatterGatherOptions,
                                   ShardActor, UnknownRequestError, concat_replies, serve, sum_replies,
                                   top_k_replies)
from engine.common.circuit_breaker import CircuitBreaker, CircuitBreakerRegistry
from engine.common.dead_letters import DeadLetterStore, ReplayReport
from engine.common.rate_limit import RateLimiter, TokenBucket
from engine.common.retry import RetryPolicy, is_transient
from engine.errors import CircuitOpenError, RateLimitedError, TransientError

__all__ = [
    "AdEventOracle", "Answer", "IngestAck", "LambdaArchitecture", "LambdaOptions", "MasterLog", "QueryFailedError",
    "AutoscalePolicy", "CallbackSink", "CollectSink", "IteratorSource", "LiveFeed", "LocalPipelineExecutor",
    "ParquetSink", "ParquetSource", "Pipeline", "PipelineFailedError", "PipelineHandle", "PipelineOptions",
    "PipelineResult", "RayPipelineExecutor", "Stage", "StageMetrics", "TableSource", "TextSource",
    "replay_dead_letters", "GatherResult", "NotEnoughRepliesError", "RequestExpiredError", "ScatterGather",
    "ScatterGatherError", "ScatterGatherOptions", "ShardActor", "serve", "InlineScatterGather", "RayScatterGather",
    "UnknownRequestError", "concat_replies", "sum_replies", "top_k_replies",
    "ChaosPlan", "CircuitBreaker", "CircuitBreakerRegistry", "CircuitOpenError", "ClusterInfo", "DeadLetterStore",
    "GroupByAggregate", "InputNotFoundError", "JobFailedError", "JobHandle", "JobOptions", "JobResult",
    "SpecError", "MapReduceJob", "MasterChaos", "OutputExistsError", "RateLimitedError",
    "RateLimiter", "ReplayReport", "RetryPolicy", "TokenBucket",
    "TooManyBadRecordsError", "TransientError", "WorkerChaos", "connect", "count_words", "increment_counter",
    "is_transient", "run_local", "shutdown", "split_words", "submit",
]
