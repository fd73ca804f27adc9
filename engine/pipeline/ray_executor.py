"""The Ray executor and the handle of a pipeline running on Ray."""

from __future__ import annotations

from engine.cluster import require_ray
from engine.pipeline.coordinator import Coordinator
from engine.pipeline.handle import PipelineHandle
from engine.pipeline.result import PipelineResult
from engine.pipeline.spec import Pipeline


class RayPipelineHandle(PipelineHandle):
    """A pipeline whose filters run in replica actors on Ray (see ``PipelineHandle``)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator
        super().__init__(coordinator)

    def replica_actors(self, stage_id: str) -> list[object]:
        """The live replica actors of a stage, in slot order (for inspection and fault injection)."""
        index = [stage.id for stage in self.pipeline.stages].index(self.pipeline.stage(stage_id).id)
        return self._coordinator.replica_actors(index)


class RayPipelineExecutor:
    """Runs pipelines on the connected Ray cluster (``engine.connect()`` first)."""

    def start(self, pipeline: Pipeline, resume: bool = False) -> RayPipelineHandle:
        """Start ``pipeline`` in the background and return its handle at once (``resume``:
        see ``shell.PipelineRun``)."""
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"RayPipelineExecutor.start needs a Pipeline, got {type(pipeline).__name__}")
        require_ray("a pipeline on the Ray executor")
        return RayPipelineHandle(Coordinator(pipeline, resume))

    def run(self, pipeline: Pipeline) -> PipelineResult:
        """Run ``pipeline`` to completion and return its result."""
        return self.start(pipeline).result()
