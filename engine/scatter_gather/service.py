"""What the two scatter-gather executors share: the ``Handle`` of a running service.

A service is open-ended work: ``progress()`` is ``None``; ``cancel()`` (or ``close()``)
stops it; ``result(timeout_s)`` waits until it is stopped and returns its final metrics.
``metrics()`` counts requests, partial answers and errors and gives latency percentiles.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any

import numpy as np

from engine.errors import ResultTimeoutError
from engine.runtime.handle import CANCELLED, RUNNING, Handle
from engine.scatter_gather.spec import GatherResult

_KEPT_LATENCIES = 10_000


class ScatterGatherService(Handle):
    """Handle methods of a scatter-gather service; executors call ``_note`` per answer."""

    executor_name = "?"

    def _init_service(self) -> None:
        self._stats_lock = threading.Lock()
        self._stats: Counter = Counter()
        self._latencies_s: deque[float] = deque(maxlen=_KEPT_LATENCIES)
        self._stopped = threading.Event()

    def _note(self, result: GatherResult) -> None:
        with self._stats_lock:
            self._stats["requests"] += 1
            self._stats["partial_answers"] += int(result.partial)
            self._stats["shard_errors"] += len(result.errors)
            self._latencies_s.append(result.elapsed_s)

    def _note_failure(self) -> None:
        with self._stats_lock:
            self._stats["requests"] += 1
            self._stats["failed_requests"] += 1

    def status(self) -> dict[str, Any]:
        return {"state": CANCELLED if self._stopped.is_set() else RUNNING, "executor": self.executor_name,
                "shards": len(self.worker_names)}  # type: ignore[attr-defined]

    def metrics(self) -> dict[str, Any]:
        with self._stats_lock:
            latencies = np.array(self._latencies_s) if self._latencies_s else None
            metrics: dict[str, Any] = dict(self._stats)
        for q in (50, 90, 99):
            metrics[f"latency_p{q}_ms"] = float(np.percentile(latencies, q) * 1000) if latencies is not None else None
        return metrics

    def counters(self) -> Counter:
        with self._stats_lock:
            return Counter(self._stats)

    def progress(self) -> None:
        return None

    def result(self, timeout_s: float | None = None) -> dict[str, Any]:
        """Wait until the service is stopped (``cancel``/``close``); its final metrics."""
        if not self._stopped.wait(timeout_s):
            raise ResultTimeoutError(f"scatter-gather service still serving after {timeout_s}s")
        return self.metrics()

    def cancel(self) -> None:
        self.close()  # type: ignore[attr-defined]

    def __enter__(self) -> "ScatterGatherService":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]
