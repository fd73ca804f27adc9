"""The batch layer's schedule: recompute the batch views every few seconds in a background
thread, retry a failed recomputation, and report when retrying gives up.

Plain threading, no Ray.  A failed recomputation is retried with the engine's one
``RetryPolicy`` (its backoff sleeps wake up at once when the schedule is stopped); when
the policy gives up, the schedule stops and hands a one-line :class:`BatchLayerError` to
``on_failure`` -- the deployment then reports it from ``status()``, ``result()``, ingest
and queries -- instead of the failure vanishing in a thread nobody watches.
"""

from __future__ import annotations

import threading
from typing import Callable

from engine.common.bad_records import describe_error
from engine.common.retry import RetryPolicy
from engine.lambda_arch.errors import BatchLayerError

_LONGEST_S = 7 * 24 * 3600.0


class BatchSchedule:
    """Calls ``recompute()`` every ``every_s`` seconds until stopped or given up.

    ``runs`` counts successful recomputations, ``failed_attempts`` failed calls (retries
    included), ``last_failure`` is the one-line description of the latest failed call,
    ``error`` the ``BatchLayerError`` the schedule stopped with (``None`` while it runs).
    """

    def __init__(self, recompute: Callable[[], object], every_s: float, retry: RetryPolicy,
                 on_failure: Callable[[BatchLayerError], None]) -> None:
        if isinstance(every_s, bool) or not isinstance(every_s, (int, float)) or not 0 < every_s <= _LONGEST_S:
            raise ValueError(f"batch schedule interval must be a number of seconds in (0, {_LONGEST_S:g}], "
                             f"got {every_s!r}")
        self._recompute = recompute
        self.every_s = float(every_s)
        self._retry = retry
        self._on_failure = on_failure
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lambda-batch-schedule", daemon=True)
        self.runs = 0
        self.failed_attempts = 0
        self.last_failure: str | None = None
        self.error: BatchLayerError | None = None

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def running(self) -> bool:
        """True until stopped or given up."""
        return self._thread.is_alive()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait until the schedule has ended (stopped or given up); True if it has."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self) -> None:
        """Stop and wait for a recomputation in progress to finish (a backoff wait ends at once)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _attempt(self, attempts: list[int]) -> None:
        if self._stop.is_set():
            return
        attempts[0] += 1
        try:
            self._recompute()
        except Exception as error:
            self.failed_attempts += 1
            self.last_failure = describe_error(error).one_line()
            raise

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            attempts = [0]
            try:
                self._retry.call(self._attempt, attempts, sleep=self._stop.wait)
            except Exception as error:
                failure = BatchLayerError(f"the batch layer stopped: recomputing the batch views failed "
                                          f"{attempts[0]} time(s), last with {describe_error(error).one_line()}")
                failure.__cause__ = error
                self.error = failure
                self._on_failure(failure)
                return
            if self._stop.is_set():
                return
            self.runs += 1
