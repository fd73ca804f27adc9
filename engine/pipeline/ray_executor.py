"""The Ray executor and the handle of a running pipeline."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pyarrow as pa
from engine.cluster import require_ray
from engine.errors import ResultTimeoutError
from engine.runtime.handle import CANCELLED, FAILED, RUNNING, SUCCEEDED, Handle
from engine.pipeline.coordinator import Coordinator, PipelineFailedError
from engine.pipeline.result import PipelineResult, StageMetrics
from engine.io.sources import LiveFeed
from engine.pipeline.spec import Pipeline


class PipelineHandle(Handle):
    """A pipeline running on Ray.  Every method is safe to call from any thread.

    ``metrics()`` while it runs; ``scale(stage_id, n)`` to change a stage's replicas;
    ``push(batch)`` for a ``LiveFeed`` source; ``close()`` (alias ``drain()``) ends the
    input and waits until every batch read so far is delivered; ``cancel()`` stops
    promptly, dropping batches in flight; ``result()`` waits for the end.
    """

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator
        self._thread = threading.Thread(target=coordinator.run, name="pipeline-coordinator", daemon=True)
        self._thread.start()

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this handle runs."""
        return self._coordinator.pipeline

    def metrics(self) -> dict[str, StageMetrics]:
        """Per-stage metrics now (stage id -> counters, plus ``"sink"``)."""
        return self._coordinator.metrics_snapshot()

    def status(self) -> dict[str, Any]:
        """``state`` (running, succeeded, failed or cancelled) and the error, if any."""
        coordinator = self._coordinator
        if not coordinator.finished.is_set():
            return {"state": RUNNING, "executor": "ray"}
        if coordinator.error is not None:
            return {"state": FAILED, "executor": "ray", "error": str(coordinator.error).splitlines()[0]}
        if coordinator.cancelled.is_set():
            return {"state": CANCELLED, "executor": "ray"}
        return {"state": SUCCEEDED, "executor": "ray"}

    def counters(self) -> Counter:
        """Rows out of every stage (``<stage>.rows_out``) so far."""
        return Counter({f"{stage}.rows_out": m.rows_out for stage, m in self.metrics().items()})

    def progress(self) -> float | None:
        """1.0 once the run ended; ``None`` while it runs (a source's length is not known)."""
        return 1.0 if self._coordinator.finished.is_set() else None

    def scale(self, stage_id: str, replicas: int) -> None:
        """Set the replica count of a stage (applied by the coordinator within a loop turn).

        On a keyed stage, changing the count remaps keys to replicas from then on.
        """
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"scale({stage_id!r}, ...): replicas must be an int >= 1, got {replicas!r}")
        index = [stage.id for stage in self.pipeline.stages].index(self.pipeline.stage(stage_id).id)
        with self._coordinator.lock:
            self._coordinator.scale_requests[index] = replicas

    def replica_actors(self, stage_id: str) -> list[object]:
        """The live replica actors of a stage (for inspection and fault injection)."""
        index = [stage.id for stage in self.pipeline.stages].index(self.pipeline.stage(stage_id).id)
        return [replica.actor for replica in list(self._coordinator.stages[index].active)]

    def push(self, batch: pa.Table | pa.RecordBatch, client_id: str = "default", timeout_s: float | None = None) -> None:
        """Push a batch into the pipeline's ``LiveFeed`` source (blocks while it is full)."""
        source = self.pipeline.source
        if not isinstance(source, LiveFeed):
            raise TypeError(f"push() needs a LiveFeed source; this pipeline reads {type(source).__name__}")
        source.push(batch, client_id=client_id, timeout_s=timeout_s)

    def done(self) -> bool:
        """True once the run has ended (completed, drained, cancelled or failed)."""
        return self._coordinator.finished.is_set()

    def result(self, timeout_s: float | None = None) -> PipelineResult:
        """Wait for the end of the run and return its result; raises if the run failed."""
        if not self._coordinator.finished.wait(timeout_s):
            raise ResultTimeoutError(f"pipeline still running after {timeout_s}s")
        self._thread.join()
        if self._coordinator.error is not None:
            error = self._coordinator.error
            raise PipelineFailedError(f"pipeline failed: {error}") from error
        assert self._coordinator.result is not None
        return self._coordinator.result

    def close(self, timeout_s: float | None = None) -> PipelineResult:
        """End the input (close a live feed; stop reading other sources) and wait until
        every batch already read is delivered.  Returns the result."""
        source = self.pipeline.source
        if isinstance(source, LiveFeed):
            source.close()
        else:
            self._coordinator.stop_reading.set()
        self._coordinator.wakeup.set()
        return self.result(timeout_s)

    drain = close

    def cancel(self) -> None:
        """Stop promptly: no new calls, replicas killed, batches in flight dropped; waits
        until the run has stopped (``result()`` then gives the cancelled run's result)."""
        self._coordinator.cancelled.set()
        self._coordinator.wakeup.set()
        self._coordinator.finished.wait()


class RayPipelineExecutor:
    """Runs pipelines on the connected Ray cluster (``engine.connect()`` first)."""

    def start(self, pipeline: Pipeline) -> PipelineHandle:
        """Start ``pipeline`` in the background and return its handle at once."""
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"RayPipelineExecutor.start needs a Pipeline, got {type(pipeline).__name__}")
        require_ray("a pipeline on the Ray executor")
        return PipelineHandle(Coordinator(pipeline))

    def run(self, pipeline: Pipeline) -> PipelineResult:
        """Run ``pipeline`` to completion and return its result."""
        return self.start(pipeline).result()
