"""What the flow core needs to know about a pipeline: bounds, keys, replica counts."""

from __future__ import annotations

from dataclasses import dataclass

from engine.pipeline.spec import AutoscalePolicy, Pipeline


@dataclass(frozen=True)
class StagePlan:
    """One stage as the flow core sees it (no filter: the executors call it)."""

    id: str
    replicas: int = 1
    key: str | None = None
    pipe_capacity: int = 8
    autoscale: AutoscalePolicy | None = None


@dataclass(frozen=True)
class FlowPlan:
    """The flow settings of one run.  ``source_name``/``sink_name`` appear in error messages."""

    stages: tuple[StagePlan, ...]
    ordered: bool = False
    sink_capacity: int = 8
    inflight_per_replica: int = 4
    max_replica_restarts: int = 20
    source_name: str = "source"
    sink_name: str = "sink"

    @classmethod
    def from_pipeline(cls, pipeline: Pipeline) -> "FlowPlan":
        """The flow plan of ``pipeline``."""
        options = pipeline.options
        return cls(
            stages=tuple(StagePlan(s.id, s.replicas, s.key, s.pipe_capacity, s.autoscale) for s in pipeline.stages),
            ordered=options.ordered,
            sink_capacity=options.sink_capacity,
            inflight_per_replica=options.inflight_per_replica,
            max_replica_restarts=options.max_replica_restarts,
            source_name=type(pipeline.source).__name__,
            sink_name=type(pipeline.sink).__name__,
        )
