"""Retry with fixed, incremental or exponential backoff, jitter, attempt limit and time box.

The one retry policy of the engine: MapReduce tasks, pipeline stages and sinks, the
serving layer and the control plane all retry through ``RetryPolicy``.  Only failures
classed as transient (see :func:`is_transient`) are retried; anything else propagates
from the first attempt untouched.  Clock, sleep and random source are
injectable so the timing behaviour is testable without waiting.
"""

from __future__ import annotations

import functools
import math
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from engine.errors import TransientError

T = TypeVar("T")

BACKOFFS = ("fixed", "incremental", "exponential")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a call that fails transiently.

    - ``max_attempts``: total attempts including the first (>= 1).
    - ``backoff``: ``"fixed"`` waits ``base`` every time, ``"incremental"`` waits
      ``base * n`` after attempt n, ``"exponential"`` waits ``base * 2**(n-1)``;
      all are capped at ``max_delay_s``.
    - ``jitter``: fraction (0..1) of each delay that is randomized ("equal jitter"):
      the delay becomes ``d * (1 - jitter) + uniform(0, d * jitter)``, so retries of
      many callers spread out while each still waits at least ``d * (1 - jitter)``.
    - ``time_box_s``: give up (raise the last error) when the next sleep would take the
      total time since the first attempt past this bound.
    - ``retry_on``: exception types classed as transient.

    The policy is an inert, picklable value; it can be shipped to Ray actors.
    """

    max_attempts: int = 3
    backoff: str = "exponential"
    base_delay_s: float = 0.05
    max_delay_s: float = 5.0
    jitter: float = 0.5
    time_box_s: float | None = None
    retry_on: tuple[type[BaseException], ...] = (TransientError,)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"RetryPolicy.max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff not in BACKOFFS:
            raise ValueError(
                f"RetryPolicy.backoff must be one of {', '.join(BACKOFFS)}; got {self.backoff!r}"
            )
        for name in ("base_delay_s", "max_delay_s"):
            value = getattr(self, name)
            if not _is_finite_non_negative(value):
                raise ValueError(f"RetryPolicy.{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.jitter, (int, float)) and 0.0 <= self.jitter <= 1.0):
            raise ValueError(f"RetryPolicy.jitter must be within 0..1, got {self.jitter!r}")
        if self.time_box_s is not None and not _is_finite_non_negative(self.time_box_s):
            raise ValueError(f"RetryPolicy.time_box_s must be None or >= 0, got {self.time_box_s!r}")
        if isinstance(self.retry_on, type):
            # A single class is an easy slip; accept it as a one-element tuple.
            object.__setattr__(self, "retry_on", (self.retry_on,))
        if not isinstance(self.retry_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on
        ):
            raise ValueError(
                f"RetryPolicy.retry_on must be a tuple of exception types, got {self.retry_on!r}"
            )

    def base_delay_for(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (1-based) before jitter, capped."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        if self.backoff == "fixed":
            raw = self.base_delay_s
        elif self.backoff == "incremental":
            raw = self.base_delay_s * attempt
        else:
            try:
                raw = self.base_delay_s * 2.0 ** (attempt - 1)
            except OverflowError:  # huge attempt numbers: the cap applies anyway
                raw = math.inf if self.base_delay_s > 0 else 0.0
        return min(raw, self.max_delay_s)

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The sleep after failed attempt ``attempt`` (1-based), jitter applied.

        With ``jitter == 0`` the result is deterministic; otherwise it lies in
        ``[d * (1 - jitter), d]`` for the capped delay ``d``.  ``rng`` defaults to the
        module-level random source; pass a seeded ``random.Random`` for reproducibility.
        """
        delay = self.base_delay_for(attempt)
        if self.jitter == 0 or delay == 0:
            return delay
        draw = (rng or random).random()
        return delay * (1.0 - self.jitter) + delay * self.jitter * draw

    def is_retryable(self, exc: BaseException) -> bool:
        """True when this policy would retry after ``exc`` (it is classed as transient)."""
        return is_transient(exc, self.retry_on)

    def wrap(self, fn: Callable[..., T]) -> Callable[..., T]:
        """``fn`` made to retry per this policy (real clock and sleep), as a decorator."""

        @functools.wraps(fn)
        def retrying(*args: object, **kwargs: object) -> T:
            return self.call(fn, *args, **kwargs)

        return retrying

    def call(
        self,
        fn: Callable[..., T],
        *args: object,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        **kwargs: object,
    ) -> T:
        """Call ``fn(*args, **kwargs)``, retrying transient failures per this policy.

        Returns ``fn``'s result.  A non-transient error is raised at once, never
        retried.  When attempts or the time box run out, the last transient error is
        raised itself (so callers can catch its own type); it carries the number of
        attempts made as ``exc.retry_attempts`` and a note saying why retrying stopped.
        """
        started = clock()
        attempt = 1
        while True:
            try:
                return fn(*args, **kwargs)
            except BaseException as exc:
                if not self.is_retryable(exc):
                    raise
                if attempt >= self.max_attempts:
                    _annotate(exc, attempt, f"gave up after {attempt} attempt(s) (max_attempts)")
                    raise
                delay = self.delay_s(attempt, rng)
                if self.time_box_s is not None:
                    elapsed = clock() - started
                    if elapsed + delay > self.time_box_s:
                        _annotate(
                            exc,
                            attempt,
                            f"gave up after {attempt} attempt(s): next retry at "
                            f"{elapsed + delay:.3f}s would pass the {self.time_box_s}s time box",
                        )
                        raise
            sleep(delay)
            attempt += 1


def is_transient(
    exc: BaseException,
    retry_on: tuple[type[BaseException], ...] = (TransientError,),
) -> bool:
    """True when ``exc`` is an instance of one of the ``retry_on`` types.

    Interpreter-level exits (``KeyboardInterrupt``, ``SystemExit``,
    ``GeneratorExit``) are never transient, whatever ``retry_on`` says.
    """
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return False
    return isinstance(exc, retry_on)


def _is_finite_non_negative(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _annotate(exc: BaseException, attempts: int, note: str) -> None:
    """Record on the error how many attempts were made (best effort: some types refuse)."""
    try:
        exc.retry_attempts = attempts  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass
    exc.add_note(f"retry: {note}")
