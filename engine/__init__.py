"""Public API of the engine.  Everything a user imports comes from here.

- ``connect`` / ``shutdown``: an embedded local Ray cluster, or an existing one.
- ``run(spec, executor="ray" | "inline")``: the one way to run any spec; returns a
  ``Handle`` (``status``, ``metrics``, ``counters``, ``progress``, ``result``, ``cancel``).
- Specs (inert, validated data): ``MapReduceJob``, ``Pipeline``, ``ScatterGather``,
  ``LambdaArchitecture``.
- Sources and sinks shared by every pattern; the combine contract; the reliability
  pieces the patterns use; the engine's errors (all ``EngineError``s).

Tools for tests (fault injection) live in ``engine.testing``.

Names are imported on first use (PEP 562), so a process that needs one part of the
engine (a Ray worker running map tasks, a command line that runs one job) does not
import the others and their libraries.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "ClusterInfo": "engine.cluster",
    "NodeWatchOptions": "engine.runtime.node_watch",
    "connect": "engine.cluster",
    "shutdown": "engine.cluster",
    "CircuitBreaker": "engine.common.circuit_breaker",
    "CombineFn": "engine.common.combine",
    "GroupByAggregate": "engine.common.combine",
    "KeyedCombineFn": "engine.common.combine",
    "DeadLetterStore": "engine.common.dead_letters",
    "RateLimiter": "engine.common.rate_limit",
    "RetryPolicy": "engine.common.retry",
    "CircuitOpenError": "engine.errors",
    "EngineError": "engine.errors",
    "InputNotFoundError": "engine.errors",
    "JobFailedError": "engine.errors",
    "ClusterLostError": "engine.errors",
    "NotConnectedError": "engine.errors",
    "NotEnoughRepliesError": "engine.errors",
    "OutputExistsError": "engine.errors",
    "PipelineFailedError": "engine.errors",
    "QueryFailedError": "engine.errors",
    "RateLimitedError": "engine.errors",
    "RequestExpiredError": "engine.errors",
    "ResultTimeoutError": "engine.errors",
    "ScatterGatherError": "engine.errors",
    "SpecError": "engine.errors",
    "TooManyBadRecordsError": "engine.errors",
    "TransientError": "engine.errors",
    "UnknownRequestError": "engine.errors",
    "CallbackSink": "engine.io.sinks",
    "CollectSink": "engine.io.sinks",
    "ParquetSink": "engine.io.sinks",
    "Sink": "engine.io.sinks",
    "ArrowDatasetSource": "engine.io.dataset_sources",
    "RayDatasetSource": "engine.io.dataset_sources",
    "DeadLetterSource": "engine.io.dead_letter_source",
    "IteratorSource": "engine.io.sources",
    "LiveFeed": "engine.io.sources",
    "ParquetSource": "engine.io.sources",
    "Source": "engine.io.sources",
    "TableSource": "engine.io.sources",
    "TextSource": "engine.io.sources",
    "count_words": "engine.kernels.text",
    "Answer": "engine.lambda_arch",
    "EventContract": "engine.lambda_arch",
    "IngestAck": "engine.lambda_arch",
    "LambdaArchitecture": "engine.lambda_arch",
    "LambdaOptions": "engine.lambda_arch",
    "Query": "engine.lambda_arch",
    "QueryContext": "engine.lambda_arch",
    "QueryResult": "engine.lambda_arch",
    "ShardSnapshot": "engine.lambda_arch",
    "SpeedLayerError": "engine.lambda_arch",
    "View": "engine.lambda_arch",
    "increment_counter": "engine.mapreduce.counters",
    "JobResult": "engine.mapreduce.result",
    "JobOptions": "engine.mapreduce.spec",
    "MapReduceJob": "engine.mapreduce.spec",
    "replay_dead_letters": "engine.pipeline.dead_letters",
    "PipelineResult": "engine.pipeline.result",
    "StageMetrics": "engine.pipeline.result",
    "AutoscalePolicy": "engine.pipeline.spec",
    "Pipeline": "engine.pipeline.spec",
    "PipelineOptions": "engine.pipeline.spec",
    "SinkBreakerPolicy": "engine.pipeline.spec",
    "Stage": "engine.pipeline.spec",
    "Handle": "engine.runtime.handle",
    "run": "engine.runtime.run",
    "concat_replies": "engine.scatter_gather.aggregators",
    "sum_replies": "engine.scatter_gather.aggregators",
    "top_k_replies": "engine.scatter_gather.aggregators",
    "GatherResult": "engine.scatter_gather.spec",
    "ScatterGather": "engine.scatter_gather.spec",
    "ScatterGatherOptions": "engine.scatter_gather.spec",
}

__all__ = [
    # running
    "ClusterInfo", "Handle", "NodeWatchOptions", "connect", "run", "shutdown",
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
    "CircuitOpenError", "ClusterLostError", "EngineError", "InputNotFoundError", "JobFailedError",
    "NotConnectedError",
    "NotEnoughRepliesError", "OutputExistsError", "PipelineFailedError", "QueryFailedError", "RateLimitedError",
    "RequestExpiredError", "ResultTimeoutError", "ScatterGatherError", "SpecError", "SpeedLayerError", "TooManyBadRecordsError",
    "TransientError", "UnknownRequestError",
]


def __getattr__(name: str) -> Any:
    """Import the public name ``name`` from the module that defines it, once."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
