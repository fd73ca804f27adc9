"""The one handle shape every executor returns, whatever the pattern.

``status()`` always has a ``"state"`` key (one of ``STATES``); ``metrics()`` is a plain
dict of the executor's measurements; ``counters()`` the named counts (user counters for
MapReduce); ``progress()`` a fraction in [0, 1] for bounded work, ``None`` for open-ended
work (a live pipeline, a service); ``result(timeout_s)`` waits for the end and returns
the pattern's result or raises its error (``ResultTimeoutError`` when time runs out:
the work goes on); ``cancel()`` stops the work.
"""

from __future__ import annotations

import abc
from collections import Counter
from typing import Any

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
STATES = ("starting", RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)


class Handle(abc.ABC):
    """What ``engine.run`` returns: a running (or finished) job, pipeline, service or deployment."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """The state now (``"state"``: one of ``STATES``) and pattern-specific details."""

    @abc.abstractmethod
    def metrics(self) -> dict[str, Any]:
        """Measurements of the run so far, as a plain dict."""

    def counters(self) -> Counter:
        """Named counts of the run so far (empty when the pattern keeps none)."""
        return Counter()

    @abc.abstractmethod
    def progress(self) -> float | None:
        """Fraction of the work done, in [0, 1]; ``None`` for open-ended work."""

    @abc.abstractmethod
    def result(self, timeout_s: float | None = None) -> Any:
        """Wait for the end and return the result; raises the run's error if it failed."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the work (what was already committed stays)."""

    def done(self) -> bool:
        """True once the run has ended (succeeded, failed or cancelled)."""
        return self.status().get("state") in FINAL_STATES
