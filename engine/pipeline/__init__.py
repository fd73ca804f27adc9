"""Pipes and filters: a source, stateless Arrow filter stages run by replica actors with
bounded pipes between them, and a sink; failed rows go to the dead-letter store.

    pipeline = Pipeline(TableSource(table), [Stage("parse", parse), Stage("keep", keep)], CollectSink())
    engine.run(pipeline, "inline").result()   # inline oracle, no Ray
    handle = engine.run(pipeline)             # on Ray: metrics(), scale(), close(), cancel(), result()
"""

from engine.pipeline.dead_letters import ReplayResult, replay_dead_letters
from engine.pipeline.result import PipelineResult, StageMetrics
from engine.pipeline.spec import AutoscalePolicy, Pipeline, PipelineOptions, Stage

__all__ = ["AutoscalePolicy", "Pipeline", "PipelineOptions", "PipelineResult", "ReplayResult", "Stage",
           "StageMetrics", "replay_dead_letters"]
