"""Public API of the engine.  Everything a user imports comes from here.

- ``connect`` / ``shutdown``: an embedded local Ray cluster, or an existing one.
- ``run(spec, executor="ray" | "inline")``: the one way to run any spec; returns a
  ``Handle`` (``status``, ``metrics``, ``counters``, ``progress``, ``result``, ``cancel``).
- Specs (inert, validated data): ``MapReduceJob``, ``Pipeline``, ``ScatterGather``,
  ``LambdaArchitecture``.
- Sources and sinks shared by every pattern; the combine contract; the reliability
  pieces the patterns use; the engine's errors (all ``EngineError``s).

Tools for tests (fault injection) live in ``engine.testing``.
"""

from engine.cluster import ClusterInfo, connect, shutdown
from engine.common.circuit_breaker import CircuitBreaker
from engine.common.combine import CombineFn, GroupByAggregate, KeyedCombineFn
from engine.common.dead_letters import DeadLetterStore
from engine.common.rate_limit import RateLimiter
from engine.common.retry import RetryPolicy
from engine.errors import (CircuitOpenError, EngineError, InputNotFoundError, JobFailedError, NotConnectedError,
                           NotEnoughRepliesError, OutputExistsError, PipelineFailedError, QueryFailedError,
                           RateLimitedError, RequestExpiredError, ResultTimeoutError, ScatterGatherError, SpecError,
                           TooManyBadRecordsError, TransientError, UnknownRequestError)
from engine.io.sinks import CallbackSink, CollectSink, ParquetSink, Sink
from engine.io.dataset_sources import ArrowDatasetSource, RayDatasetSource
from engine.io.dead_letter_source import DeadLetterSource
from engine.io.sources import IteratorSource, LiveFeed, ParquetSource, Source, TableSource, TextSource
from engine.kernels.text import count_words
from engine.lambda_arch import (Answer, EventContract, IngestAck, LambdaArchitecture, LambdaOptions, Query,
                                 QueryContext, QueryResult, ShardSnapshot, SpeedLayerError, View)
from engine.mapreduce.counters import increment_counter
from engine.mapreduce.result import JobResult
from engine.mapreduce.spec import JobOptions, MapReduceJob
from engine.pipeline.dead_letters import replay_dead_letters
from engine.pipeline.result import PipelineResult, StageMetrics
from engine.pipeline.spec import AutoscalePolicy, Pipeline, PipelineOptions, SinkBreakerPolicy, Stage
from engine.runtime.handle import Handle
from engine.runtime.run import run
from engine.scatter_gather.aggregators import concat_replies, sum_replies, top_k_replies
from engine.scatter_gather.spec import GatherResult, ScatterGather, ScatterGatherOptions

__all__ = [
    # running
    "ClusterInfo", "Handle", "connect", "run", "shutdown",
    # specs and results
    "AutoscalePolicy", "JobOptions", "JobResult", "MapReduceJob", "Pipeline", "PipelineOptions", "PipelineResult",
    "SinkBreakerPolicy", "Stage", "StageMetrics", "GatherResult", "ScatterGather", "ScatterGatherOptions",
    "Answer", "EventContract", "IngestAck", "LambdaArchitecture", "LambdaOptions", "Query", "QueryContext",
    "QueryResult", "ShardSnapshot", "View",
    # sources and sinks
    "ArrowDatasetSource", "CallbackSink", "CollectSink", "DeadLetterSource", "IteratorSource", "LiveFeed", "ParquetSink",
    "ParquetSource", "RayDatasetSource", "Sink", "Source", "TableSource", "TextSource",
    # combining, user functions' helpers
    "CombineFn", "GroupByAggregate", "KeyedCombineFn", "concat_replies", "count_words", "increment_counter", "sum_replies",
    "top_k_replies",
    # reliability
    "CircuitBreaker", "DeadLetterStore", "RateLimiter", "RetryPolicy", "replay_dead_letters",
    # errors
    "CircuitOpenError", "EngineError", "InputNotFoundError", "JobFailedError", "NotConnectedError",
    "NotEnoughRepliesError", "OutputExistsError", "PipelineFailedError", "QueryFailedError", "RateLimitedError",
    "RequestExpiredError", "ResultTimeoutError", "ScatterGatherError", "SpecError", "SpeedLayerError", "TooManyBadRecordsError",
    "TransientError", "UnknownRequestError",
]
