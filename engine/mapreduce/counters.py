"""User-defined counters (paper §4.9), collected per task attempt.

User code calls ``engine.increment_counter(name, amount)`` from inside a map, combine or
reduce function.  Counts go to the attempt that is running in this thread; the master
adds an attempt's counters only when that attempt is the one that completed the task, so
a task that ran twice is counted once.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections import Counter
from typing import Iterator, Mapping

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


def add_counters(total: Counter, part: Mapping[str, int]) -> None:
    """Add ``part`` into ``total`` in place."""
    for name, value in part.items():
        total[name] += int(value)
