"""User-defined counters (paper §4.9), collected per task attempt.

User code calls ``engine.increment_counter(name, amount)`` from inside a map, combine or
reduce function.  Counts go to the attempt that is running in this thread; the master
adds an attempt's counters only when that attempt is the one that completed the task, so
a task that ran twice is counted once.  Within an attempt, a call of user code that raised
(one retried, or one half of a batch being bisected for a bad record) adds nothing
(``counted``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import Counter
from typing import Any, Callable, Iterator, Mapping, TypeVar

R = TypeVar("R")

_current: contextvars.ContextVar[Counter | None] = contextvars.ContextVar("engine_task_counters", default=None)


def increment_counter(name: str, amount: int = 1) -> None:
    """Add ``amount`` to counter ``name`` of the running task (ignored outside a task)."""
    counters = _current.get()
    if counters is not None:
        counters[name] += int(amount)


@contextlib.contextmanager
def collecting_counters() -> Iterator[Counter]:
    """Collect the counters incremented inside the ``with`` block into a fresh Counter."""
    counters: Counter = Counter()
    token = _current.set(counters)
    try:
        yield counters
    finally:
        _current.reset(token)


def counted(fn: Callable[..., R]) -> Callable[..., R]:
    """``fn`` whose counter increments are kept only when a call returns: a call that
    raises adds nothing to the running attempt's counters."""
    def call(*args: Any, **kwargs: Any) -> R:
        outer = _current.get()
        if outer is None:
            return fn(*args, **kwargs)
        inner: Counter = Counter()
        token = _current.set(inner)
        try:
            result = fn(*args, **kwargs)
        finally:
            _current.reset(token)
        add_counters(outer, inner)
        return result

    return call


def add_counters(total: Counter, part: Mapping[str, int]) -> None:
    """Add ``part`` into ``total`` in place."""
    for name, value in part.items():
        total[name] += int(value)
