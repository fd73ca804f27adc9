"""The ``engine.runtime.handle.Handle`` side of a Lambda deployment: status, metrics,
counters and ``result()`` (``LambdaDeployment`` in ``deployment.py`` inherits them)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from engine.errors import ResultTimeoutError
from engine.runtime.handle import CANCELLED, FAILED, RUNNING, Handle


class DeploymentHandle(Handle):
    """Handle methods over the deployment's state (set by ``LambdaDeployment``)."""

    directory: Path
    executor: str
    serving: Any
    log: Any
    freshness: Any
    batch_runs: list[dict[str, Any]]
    _applier: Any
    _batch_error: Exception | None
    _guard: Any
    _schedule: Any
    _counts: Counter
    _closed: threading.Event
    _final_state: str

    def _failure(self) -> Exception | None:
        """What stopped a layer: the loss of the cluster (when not restarted), a view's
        speed-layer error, else the batch layer's."""
        if self._guard.error is not None:
            return self._guard.error
        return self._applier.error if self._applier.error is not None else self._batch_error

    def status(self) -> dict[str, Any]:
        """State (running until closed; ``failed`` after a lost cluster that was not
        restarted, a view's speed-layer error or a batch schedule that gave up, with
        ``error``), executor, directory and offsets."""
        failure = self._failure()
        if self._closed.is_set():
            state = self._final_state
        else:
            state = FAILED if failure is not None else RUNNING
        version, speed = self.serving.snapshot
        status = {"state": state, "executor": self.executor, "directory": str(self.directory),
                  "end_offset": self.log.end_offset, "batch_offset": version, "speed_offset": speed}
        if failure is not None:
            status["error"] = str(failure)
        return status

    def metrics(self) -> dict[str, Any]:
        """Offsets, freshness (ack to visible), query latencies and breakers, batch runs
        and the last failed batch recomputation (``last_batch_error``, one line)."""
        schedule = self._schedule
        return {**self.status(), "freshness_p50_s": self.freshness.percentile(50),
                "freshness_p99_s": self.freshness.percentile(99), "visible_events": self.freshness.visible_events,
                "queries": self.serving.metrics(), "batch_runs": list(self.batch_runs),
                "last_batch_error": schedule.last_failure if schedule is not None else None}

    def counters(self) -> Counter:
        """Ingests, accepted/duplicate/rejected rows, batch runs, rebuilds, cluster
        restarts, queries."""
        return Counter({**self._counts, "queries_answered": self.serving.answered,
                        "queries_failed": self.serving.failed})

    def progress(self) -> None:
        """``None``: a deployment is open-ended work."""
        return None

    def result(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Wait until the deployment is closed; returns its final status.  Raises the
        failure that stopped a layer (``SpeedLayerError``, ``BatchLayerError``) at once."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            failure = self._failure()
            if failure is not None:
                raise type(failure)(str(failure)) from failure.__cause__
            if self._closed.is_set():
                return self.status()
            if deadline is not None and time.monotonic() >= deadline:
                raise ResultTimeoutError(f"the Lambda deployment on {self.directory} is still open after {timeout_s}s")
            self._closed.wait(0.05 if deadline is None else min(0.05, max(0.0, deadline - time.monotonic())))

    def cancel(self) -> None:
        """Close the deployment (state ``cancelled``)."""
        self.close(_state=CANCELLED)
