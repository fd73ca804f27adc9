"""Circuit breaker (closed / open / half-open) per downstream, with an optional health probe.

- **closed**: calls pass; ``failure_threshold`` consecutive failures open the breaker.
- **open**: calls are refused with :class:`CircuitOpenError` until ``reset_timeout_s``
  has passed.  Then the health probe (if any) is asked: ``True`` moves the breaker to
  half-open, ``False`` (or an exception) keeps it open for another timeout.  Without a
  probe the breaker goes half-open as soon as the timeout has passed.
- **half-open**: up to ``half_open_max_calls`` trial calls at a time are let through;
  a success closes the breaker, a failure opens it again (and restarts the timeout).

The clock is injectable so every transition is testable without waiting.  Methods are
thread-safe.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterator, TypeVar

from engine.errors import CircuitOpenError
from engine.common.picklable_lock import PicklableWithLock

T = TypeVar("T")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


class CircuitBreaker(PicklableWithLock):
    """Stops calling a downstream that keeps failing, and tries it again later.

    ``failure_on`` names the exception types that count as downstream failures in
    :meth:`call` (others propagate without touching the breaker's state).
    """

    _lock_factory = staticmethod(threading.RLock)  # calls re-enter while holding it

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        half_open_max_calls: int = 1,
        health_probe: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        failure_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"CircuitBreaker name must be a non-empty string, got {name!r}")
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ValueError(f"CircuitBreaker {name!r}: failure_threshold must be an int >= 1, got {failure_threshold!r}")
        if not isinstance(reset_timeout_s, (int, float)) or reset_timeout_s < 0:
            raise ValueError(f"CircuitBreaker {name!r}: reset_timeout_s must be >= 0, got {reset_timeout_s!r}")
        if isinstance(half_open_max_calls, bool) or not isinstance(half_open_max_calls, int) or half_open_max_calls < 1:
            raise ValueError(f"CircuitBreaker {name!r}: half_open_max_calls must be an int >= 1, got {half_open_max_calls!r}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = float(reset_timeout_s)
        self.half_open_max_calls = half_open_max_calls
        self.health_probe = health_probe
        self.failure_on = failure_on
        self._clock = clock
        self._lock = threading.RLock()
        self._state = CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._half_open_in_flight = 0
        self.times_opened = 0
        self.rejected_calls = 0

    # -- state -------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``, after any transition now due.

        Reading the state of an open breaker whose timeout has passed runs the health
        probe (at most once per timeout) to decide whether it is half-open.
        """
        with self._lock:
            self._advance_if_due()
            return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success (what the threshold is compared with)."""
        with self._lock:
            return self._consecutive_failures

    def retry_after_s(self) -> float:
        """Seconds until an open breaker next considers a trial call (0 unless open)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.reset_timeout_s - self._clock())

    def allow_request(self) -> bool:
        """Whether a call may go to the downstream now.

        In half-open state a ``True`` answer takes one of the ``half_open_max_calls``
        trial slots; report its outcome with :meth:`record_success` or
        :meth:`record_failure` to free it.
        """
        with self._lock:
            self._advance_if_due()
            if self._state == CLOSED:
                return True
            if self._state == HALF_OPEN and self._half_open_in_flight < self.half_open_max_calls:
                self._half_open_in_flight += 1
                return True
            self.rejected_calls += 1
            return False

    def record_success(self) -> None:
        """A call succeeded: reset the failure count; a half-open breaker closes."""
        with self._lock:
            self._consecutive_failures = 0
            if self._state == HALF_OPEN:
                self._state = CLOSED
                self._half_open_in_flight = 0

    def record_failure(self) -> None:
        """A call failed: count it; open at the threshold, or re-open from half-open."""
        with self._lock:
            self._consecutive_failures += 1
            if self._state == HALF_OPEN:
                self._open()
            elif self._state == CLOSED and self._consecutive_failures >= self.failure_threshold:
                self._open()

    def reset(self) -> None:
        """Force the breaker closed with no failures counted (operator override)."""
        with self._lock:
            self._state = CLOSED
            self._consecutive_failures = 0
            self._half_open_in_flight = 0

    def call(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Call ``fn(*args, **kwargs)`` through the breaker and record its outcome.

        Raises :class:`CircuitOpenError` without calling ``fn`` when the breaker refuses.
        Exceptions of ``failure_on`` types count as failures and are re-raised.
        """
        if not self.allow_request():
            raise CircuitOpenError(self.name, self.retry_after_s())
        try:
            result = fn(*args, **kwargs)
        except self.failure_on:
            self.record_failure()
            raise
        except BaseException:
            self._release_trial_slot()
            raise
        self.record_success()
        return result

    # -- internals -----------------------------------------------------------------

    def _open(self) -> None:
        self._state = OPEN
        self._opened_at = self._clock()
        self._half_open_in_flight = 0
        self.times_opened += 1

    def _release_trial_slot(self) -> None:
        with self._lock:
            if self._state == HALF_OPEN and self._half_open_in_flight > 0:
                self._half_open_in_flight -= 1

    def _advance_if_due(self) -> None:
        """Open → half-open once the timeout has passed and the probe (if any) agrees."""
        if self._state != OPEN:
            return
        now = self._clock()
        if now - self._opened_at < self.reset_timeout_s:
            return
        if self.health_probe is not None and not self._probe_healthy():
            self._opened_at = now  # stay open for another full timeout before re-probing
            return
        self._state = HALF_OPEN
        self._half_open_in_flight = 0

    def _probe_healthy(self) -> bool:
        try:
            return bool(self.health_probe())  # type: ignore[misc]
        except Exception:
            return False

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state!r}, failures={self._consecutive_failures})"


class CircuitBreakerRegistry:
    """One breaker per downstream name, created on first use with shared defaults."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
        failure_on: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        # Validate the defaults once, here, rather than at the first get().
        CircuitBreaker("defaults", failure_threshold, reset_timeout_s, half_open_max_calls)
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.half_open_max_calls = half_open_max_calls
        self.failure_on = failure_on
        self._clock = clock
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, name: str, health_probe: Callable[[], bool] | None = None) -> CircuitBreaker:
        """The breaker for downstream ``name``; created with the defaults if new.

        ``health_probe`` is used only when the breaker is created; later calls return
        the existing breaker unchanged.
        """
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is None:
                breaker = CircuitBreaker(
                    name,
                    failure_threshold=self.failure_threshold,
                    reset_timeout_s=self.reset_timeout_s,
                    half_open_max_calls=self.half_open_max_calls,
                    health_probe=health_probe,
                    clock=self._clock,
                    failure_on=self.failure_on,
                )
                self._breakers[name] = breaker
            return breaker

    def states(self) -> dict[str, str]:
        """The current state of every breaker, by downstream name."""
        with self._lock:
            breakers = list(self._breakers.values())
        return {b.name: b.state for b in breakers}

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[CircuitBreaker]:
        with self._lock:
            return iter(list(self._breakers.values()))

    def __len__(self) -> int:
        return len(self._breakers)
