"""Pipes and filters: a source, stateless Arrow filter stages run by replica actors with
bounded pipes between them, and a sink; failed rows go to the dead-letter store.

    pipeline = Pipeline(TableSource(table), [Stage("parse", parse), Stage("keep", keep)], CollectSink())
    engine.run(pipeline, "inline").result()   # inline oracle, no Ray
    handle = engine.run(pipeline)             # on Ray: metrics(), scale(), close(), cancel(), result()

Layout: ``spec.py`` (what a pipeline is), ``flow/`` (the Ray-free flow-control state
machine both executors drive), ``local.py`` and ``coordinator.py`` (the inline and Ray
shells around it, sharing ``shell.py``), ``handle.py`` (their one handle), ``filtering.py``
(one filter call), ``delivery.py`` (sink writes: retry + circuit breaker),
``dead_letters.py`` (recording and replay), ``replica.py`` (the Ray actor and its pool).
"""

from engine.pipeline.dead_letters import ReplayResult, replay_dead_letters
from engine.pipeline.result import PipelineResult, StageMetrics
from engine.pipeline.spec import AutoscalePolicy, Pipeline, PipelineOptions, SinkBreakerPolicy, Stage

__all__ = ["AutoscalePolicy", "Pipeline", "PipelineOptions", "PipelineResult", "ReplayResult", "SinkBreakerPolicy",
           "Stage", "StageMetrics", "replay_dead_letters"]
