"""The pipeline executors behind ``engine.run``: "inline" (the oracle) and "ray"."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pyarrow as pa

from engine.errors import ResultTimeoutError, SpecError
from engine.io.sources import LiveFeed
from engine.pipeline.result import PipelineResult
from engine.pipeline.spec import Pipeline
from engine.runtime.handle import FAILED, RUNNING, SUCCEEDED, Handle
from engine.runtime.run import RunOptions


class InlinePipelineHandle(Handle):
    """A pipeline run inline (one batch at a time through every stage) in a background
    thread of this process; ``push``/``close`` feed a ``LiveFeed`` source."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._result: PipelineResult | None = None
        self._error: BaseException | None = None
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inline-pipeline", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from engine.pipeline.local import LocalPipelineExecutor

        try:
            self._result = LocalPipelineExecutor().run(self.pipeline)
        except BaseException as error:  # surfaced by result()
            self._error = error
        finally:
            self._finished.set()

    def status(self) -> dict[str, Any]:
        if not self._finished.is_set():
            return {"state": RUNNING, "executor": "inline"}
        if self._error is not None:
            return {"state": FAILED, "executor": "inline", "error": str(self._error).splitlines()[0]}
        return {"state": SUCCEEDED, "executor": "inline", "status": self._result.status if self._result else None}

    def metrics(self) -> dict[str, Any]:
        return {stage: m.as_dict() for stage, m in self._result.metrics.items()} if self._result else {}

    def counters(self) -> Counter:
        if self._result is None:
            return Counter()
        return Counter({f"{stage}.rows_out": m.rows_out for stage, m in self._result.metrics.items()})

    def progress(self) -> float | None:
        if self._finished.is_set():
            return 1.0
        return None

    def push(self, batch: pa.Table | pa.RecordBatch, client_id: str = "default", timeout_s: float | None = None) -> None:
        """Push a batch into the pipeline's ``LiveFeed`` source (blocks while it is full)."""
        if not isinstance(self.pipeline.source, LiveFeed):
            raise TypeError(f"push() needs a LiveFeed source; this pipeline reads {type(self.pipeline.source).__name__}")
        self.pipeline.source.push(batch, client_id=client_id, timeout_s=timeout_s)

    def close(self, timeout_s: float | None = None) -> PipelineResult:
        """End a live feed and wait for every batch pushed so far to be delivered."""
        if isinstance(self.pipeline.source, LiveFeed):
            self.pipeline.source.close()
        return self.result(timeout_s)

    def result(self, timeout_s: float | None = None) -> PipelineResult:
        if not self._finished.wait(timeout_s):
            raise ResultTimeoutError(f"pipeline still running after {timeout_s}s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        """The inline run goes on to its end; a live feed is closed."""
        if isinstance(self.pipeline.source, LiveFeed):
            self.pipeline.source.close()


class InlineExecutor:
    """Runs a pipeline inline, in this process, without Ray."""

    def start(self, pipeline: Pipeline, options: RunOptions) -> InlinePipelineHandle:
        """Start ``pipeline`` and return its handle at once."""
        _no_run_options(options)
        return InlinePipelineHandle(pipeline)


class RayExecutor:
    """Runs a pipeline on the connected Ray cluster: replica actors and bounded pipes."""

    def start(self, pipeline: Pipeline, options: RunOptions) -> Handle:
        """Start ``pipeline`` and return its handle at once."""
        from engine.pipeline.ray_executor import RayPipelineExecutor

        _no_run_options(options)
        return RayPipelineExecutor().start(pipeline)


def _no_run_options(options: RunOptions) -> None:
    if options.resume or options.chaos is not None:
        raise SpecError("pipelines take neither resume nor chaos options")


EXECUTORS = {"inline": InlineExecutor, "ray": RayExecutor}
