"""What the flow core needs to know about a pipeline: bounds, keys, replica counts, and
which stages run chained in one call (``PipelineOptions.chaining``)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.pipeline.spec import AutoscalePolicy, Pipeline, Stage


@dataclass(frozen=True)
class StagePlan:
    """One link of the run as the flow core sees it (no filter: the executors call it):
    the stage ``id`` and the ``members`` chained after it, which run in the same call of
    the same replica on its output, in order."""

    id: str
    replicas: int = 1
    key: str | None = None
    pipe_capacity: int = 8
    autoscale: AutoscalePolicy | None = None
    members: tuple[str, ...] = ()

    @property
    def stage_ids(self) -> tuple[str, ...]:
        """Every stage of this link, in order."""
        return (self.id, *self.members)


def chains(pipeline: Pipeline) -> tuple[tuple[int, ...], ...]:
    """The pipeline's stages grouped into links (indexes into ``pipeline.stages``).

    A stage joins the link of the stage before it when chaining is on and it has no key
    (its rows need no routing), no autoscaling, and the same replicas and CPUs per replica
    as that stage; otherwise it starts a link of its own."""
    links: list[list[int]] = []
    for index, stage in enumerate(pipeline.stages):
        if links and pipeline.options.chaining and _joins(pipeline.stages[links[-1][-1]], stage):
            links[-1].append(index)
        else:
            links.append([index])
    return tuple(tuple(link) for link in links)


def _joins(before: Stage, stage: Stage) -> bool:
    return (stage.key is None and stage.autoscale is None and before.autoscale is None
            and stage.replicas == before.replicas and stage.num_cpus == before.num_cpus)


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
        """The flow plan of ``pipeline``: one ``StagePlan`` per link of ``chains``."""
        options = pipeline.options
        links = []
        for link in chains(pipeline):
            head = pipeline.stages[link[0]]
            members = tuple(pipeline.stages[i].id for i in link[1:])
            links.append(StagePlan(head.id, head.replicas, head.key, head.pipe_capacity, head.autoscale, members))
        return cls(
            stages=tuple(links),
            ordered=options.ordered,
            sink_capacity=options.sink_capacity,
            inflight_per_replica=options.inflight_per_replica,
            max_replica_restarts=options.max_replica_restarts,
            source_name=type(pipeline.source).__name__,
            sink_name=type(pipeline.sink).__name__,
        )

    def link_of(self, stage_id: str) -> int:
        """The index of the link that runs stage ``stage_id``."""
        for index, link in enumerate(self.stages):
            if stage_id in link.stage_ids:
                return index
        raise KeyError(f"no stage {stage_id!r} in this run (stages: {[s for l in self.stages for s in l.stage_ids]})")
