"""The handle of a running pipeline, the same for both executors (``engine.runtime.handle.Handle``)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pyarrow as pa

from engine.errors import ResultTimeoutError
from engine.io.sources import LiveFeed
from engine.pipeline.result import PipelineResult, StageMetrics
from engine.pipeline.shell import PipelineRun
from engine.pipeline.spec import Pipeline
from engine.runtime.handle import CANCELLED, FAILED, RUNNING, SUCCEEDED, Handle

_COUNTED = ("batches_in", "batches_out", "rows_in", "rows_out", "errors", "dead_letters")


class PipelineHandle(Handle):
    """A pipeline running in a background thread of this process (inline, or driving Ray
    actors).  Every method is safe to call from any thread.

    ``metrics()`` while it runs; ``scale(stage_id, n)`` to change a stage's replicas;
    ``push(batch)`` for a ``LiveFeed`` source; ``close()`` (alias ``drain()``) ends the
    input and waits until every batch read so far is delivered; ``cancel()`` stops
    promptly, dropping batches in flight; ``result()`` waits for the end.
    """

    def __init__(self, run: PipelineRun) -> None:
        self._run = run
        self._cancelled = False
        self._done = threading.Event()  # the handle's end: a Ray run may be followed by a resumed one
        self._thread = threading.Thread(target=self._drive, name=f"pipeline-{run.executor_name}", daemon=True)
        self._thread.start()

    def _drive(self) -> None:
        """The handle's thread: run to the end (the Ray handle may run again after a loss)."""
        try:
            self._run.run()
        finally:
            self._done.set()

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline this handle runs."""
        return self._run.pipeline

    def status(self) -> dict[str, Any]:
        """``state`` (running, succeeded, failed or cancelled), the executor, the run's
        ``status`` once over (completed, drained, cancelled) and the error's first line."""
        run = self._run
        if not self._done.is_set():
            return {"state": RUNNING, "executor": run.executor_name}
        if run.error is not None:
            return {"state": FAILED, "executor": run.executor_name, "error": str(run.error).splitlines()[0]}
        assert run.result is not None
        state = CANCELLED if run.result.status == "cancelled" else SUCCEEDED
        return {"state": state, "executor": run.executor_name, "status": run.result.status}

    def metrics(self) -> dict[str, StageMetrics]:
        """Per-stage metrics now: stage id -> ``StageMetrics``, plus ``"source"`` (rows read,
        ``dead_letters`` = bad input records) and ``"sink"``."""
        return self._run.metrics_snapshot()

    def counters(self) -> Counter:
        """``<stage>.<counter>`` for batches/rows in and out, errors and dead letters of every
        stage, the source and the sink, so far."""
        return Counter({f"{name}.{field}": getattr(m, field)
                        for name, m in self.metrics().items() for field in _COUNTED})

    def progress(self) -> float | None:
        """1.0 once the run ended; ``None`` while it runs (a source's length is not known)."""
        return 1.0 if self._done.is_set() else None

    def done(self) -> bool:
        """True once the run has ended (completed, drained, cancelled or failed)."""
        return self._done.is_set()

    def scale(self, stage_id: str, replicas: int) -> None:
        """Set the replica count of a stage (applied within a loop turn of the run).

        On a keyed stage, changing the count remaps keys to replicas from then on.
        """
        self._run.request_scale(stage_id, replicas)

    def push(self, batch: pa.Table | pa.RecordBatch, client_id: str = "default", timeout_s: float | None = None) -> None:
        """Push a batch into the pipeline's ``LiveFeed`` source (blocks while it is full)."""
        source = self.pipeline.source
        if not isinstance(source, LiveFeed):
            raise TypeError(f"push() needs a LiveFeed source; this pipeline reads {type(source).__name__}")
        source.push(batch, client_id=client_id, timeout_s=timeout_s)

    def result(self, timeout_s: float | None = None) -> PipelineResult:
        """Wait for the end of the run and return its result; raises the run's
        ``PipelineFailedError`` if it failed (``ResultTimeoutError`` if time runs out)."""
        if not self._done.wait(timeout_s):
            raise ResultTimeoutError(f"pipeline still running after {timeout_s}s")
        self._thread.join()
        if self._run.error is not None:
            raise self._run.error
        assert self._run.result is not None
        return self._run.result

    def close(self, timeout_s: float | None = None) -> PipelineResult:
        """End the input (close a live feed; stop reading other sources) and wait until
        every batch already read is delivered.  Returns the result."""
        self._run.request_drain()
        return self.result(timeout_s)

    drain = close

    def cancel(self) -> None:
        """Stop promptly: nothing more is submitted or delivered, batches in flight are
        dropped; waits until the run has stopped (``result()`` then gives the cancelled
        run's result)."""
        self._cancelled = True  # no resumed run after this
        self._run.request_cancel()
        self._done.wait()
