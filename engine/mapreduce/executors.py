"""The MapReduce executors behind ``engine.run``: "inline" (local mode, the oracle) and "ray"."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from engine.errors import ResultTimeoutError, SpecError
from engine.mapreduce.result import JobResult
from engine.mapreduce.spec import MapReduceJob
from engine.runtime.handle import FAILED, RUNNING, SUCCEEDED, Handle
from engine.runtime.run import RunOptions


class InlineJobHandle(Handle):
    """A job run by local mode (paper §4.7) in a background thread of this process."""

    def __init__(self, job: MapReduceJob) -> None:
        self.job = job
        self._result: JobResult | None = None
        self._error: BaseException | None = None
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"inline-{job.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from engine.mapreduce.local import run_local

        try:
            self._result = run_local(self.job)
        except BaseException as error:  # surfaced by result()
            self._error = error
        finally:
            self._finished.set()

    def status(self) -> dict[str, Any]:
        if not self._finished.is_set():
            return {"state": RUNNING, "executor": "inline"}
        if self._error is not None:
            return {"state": FAILED, "executor": "inline", "error": str(self._error).splitlines()[0]}
        return {"state": SUCCEEDED, "executor": "inline"}

    def metrics(self) -> dict[str, Any]:
        if self._result is None:
            return {}
        return {"elapsed_s": self._result.elapsed_s, "map_tasks": self._result.map_tasks,
                "reduce_tasks": self._result.reduce_tasks}

    def counters(self) -> Counter:
        return Counter(self._result.counters) if self._result is not None else Counter()

    def progress(self) -> float:
        return 1.0 if self._finished.is_set() else 0.0

    def result(self, timeout_s: float | None = None) -> JobResult:
        if not self._finished.wait(timeout_s):
            raise ResultTimeoutError(f"job {self.job.name} still running after {timeout_s}s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        """Local mode runs to its end; cancelling only stops waiting for it."""


class InlineExecutor:
    """Runs a job with local mode, in this process, without Ray."""

    def start(self, job: MapReduceJob, options: RunOptions) -> InlineJobHandle:
        """Start ``job`` and return its handle at once."""
        if options.chaos is not None:
            raise SpecError("fault injection (chaos) needs the ray executor")
        if options.resume:
            raise SpecError("resume=True needs the ray executor (local mode keeps no snapshots)")
        return InlineJobHandle(job)


class RayExecutor:
    """Runs a job on the connected Ray cluster: masters, workers, snapshots."""

    def start(self, job: MapReduceJob, options: RunOptions) -> Handle:
        """Start ``job`` and return its handle at once."""
        from engine.mapreduce.handle import submit

        return submit(job, chaos=options.chaos, resume=options.resume)


EXECUTORS = {"inline": InlineExecutor, "ray": RayExecutor}
