"""The Ray executor and the handle of a pipeline running on Ray.

A run ends at once when the cluster under it is lost (``Coordinator.lost``).  The
handle then asks ``engine.runtime.node_watch.Recovery`` (pipeline wording): on the
embedded cluster it restarts the cluster and runs the pipeline again with
``resume=True``, so the sink's committed batches are kept and not delivered again (every
row exactly once), and says so in one line on standard error; on an external cluster,
after ``max_restarts``, or when the pipeline cannot resume (``resume_blocker``), the run
fails with a ``PipelineFailedError`` of one line naming what was lost and how to continue.
"""

from __future__ import annotations

import sys

from engine import cluster
from engine.cluster import require_ray
from engine.errors import PipelineFailedError
from engine.pipeline.coordinator import Coordinator
from engine.pipeline.executors import pipeline_name, resume_blocker
from engine.pipeline.handle import PipelineHandle
from engine.pipeline.result import PipelineResult
from engine.pipeline.spec import Pipeline
from engine.runtime.node_watch import PIPELINE, GiveUp, Recovery


class RayPipelineHandle(PipelineHandle):
    """A pipeline whose filters run in replica actors on Ray (see ``PipelineHandle``);
    ``recoveries`` holds the one line of each restart of the embedded cluster."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator
        self._recovery = Recovery(pipeline_name(coordinator.pipeline), cluster.node_watch_options(), wording=PIPELINE)
        self.recoveries: list[str] = []
        super().__init__(coordinator)

    def _drive(self) -> None:
        try:
            while True:
                run = self._coordinator
                run.run()
                if run.lost is None or self._cancelled:
                    return
                fresh = self._recover(run)
                if fresh is None:
                    return
                self._coordinator = self._run = fresh
                if self._cancelled:
                    fresh.request_cancel()
        finally:
            self._done.set()

    def _recover(self, run: Coordinator) -> Coordinator | None:
        """Fail ``run`` with one line, or restart the embedded cluster and return a resumed run."""
        assert run.lost is not None
        decision = self._recovery.decide(run.lost, resume_blocker(self.pipeline))
        if isinstance(decision, GiveUp):
            run.error = PipelineFailedError(decision.message)
            return None
        sink = run.metrics_snapshot()["sink"]
        try:
            cluster.restart_embedded(run.generation)
        except BaseException as error:  # could not start a new cluster: the run fails with that
            run.error = PipelineFailedError(f"{run.lost.cluster()} lost ({run.lost.what()}); restarting it failed: "
                                         f"{str(error).splitlines()[0] if str(error) else type(error).__name__}")
            return None
        line = self._recovery.resumed_line(run.lost, sink.batches_in + run.core.ledger.skipped_batches > 0)
        print(line, file=sys.stderr, flush=True)
        self.recoveries.append(line)
        return Coordinator(self.pipeline, resume=True)

    def replica_actors(self, stage_id: str) -> list[object]:
        """The live replica actors of a stage, in slot order (for inspection and fault
        injection); a chained stage shares them with the stages of its link."""
        coordinator = self._coordinator
        return coordinator.replica_actors(coordinator.core.plan.link_of(self.pipeline.stage(stage_id).id))


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
