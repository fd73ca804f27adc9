"""Pipes and filters: a source, stateless Arrow filter stages run by replica actors with
bounded pipes between them, and a sink; failed rows go to the dead-letter store.

    pipeline = Pipeline(TableSource(table), [Stage("parse", parse), Stage("keep", keep)], CollectSink())
    pipeline.run_local()          # inline oracle, no Ray
    handle = pipeline.start()     # on Ray: handle.metrics(), scale(), close(), cancel(), result()
"""

from engine.pipeline.coordinator import PipelineFailedError
from engine.pipeline.dead_letters import ReplayResult, replay_dead_letters
from engine.pipeline.local import LocalPipelineExecutor
from engine.pipeline.ray_executor import PipelineHandle, RayPipelineExecutor
from engine.pipeline.replica import release_idle_replicas
from engine.pipeline.result import PipelineResult, StageMetrics
from engine.io.sinks import CallbackSink, CollectSink, ParquetSink, Sink
from engine.io.sources import IteratorSource, LiveFeed, ParquetSource, Source, TableSource, TextSource
from engine.pipeline.spec import AutoscalePolicy, Pipeline, PipelineOptions, Stage

__all__ = [
    "AutoscalePolicy",
    "CallbackSink",
    "CollectSink",
    "IteratorSource",
    "LiveFeed",
    "LocalPipelineExecutor",
    "ParquetSink",
    "ParquetSource",
    "Pipeline",
    "PipelineFailedError",
    "PipelineHandle",
    "PipelineOptions",
    "PipelineResult",
    "RayPipelineExecutor",
    "ReplayResult",
    "Sink",
    "Source",
    "Stage",
    "StageMetrics",
    "TableSource",
    "TextSource",
    "release_idle_replicas",
    "replay_dead_letters",
]
