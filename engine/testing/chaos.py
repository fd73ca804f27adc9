"""Deterministic fault injection for MapReduce workers (tests, benchmarks and demos).

A ``WorkerChaos`` travels with a worker: it can kill the worker's process after its
k-th task, slow every task down by a factor, or stall after each task.  ``MasterChaos``
kills the master after n task completions.  A ``ChaosPlan`` bundles them for one run:
``engine.run(job, chaos=ChaosPlan(...))``.  Records that poison user code are the user
map function's business (tests write such maps themselves).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerChaos:
    """Faults one worker injects into itself.

    - ``die_after_tasks``: exit the process abruptly right after finishing this many tasks.
    - ``die_in_phase``: only count tasks of this kind ("map", "reduce" or None for both).
    - ``slowdown``: sleep ``(slowdown - 1) x`` each task's run time after it (1 = off).
    - ``delay_s``: sleep this long after each task (a straggler even for tiny tasks).
    """

    die_after_tasks: int | None = None
    die_in_phase: str | None = None
    slowdown: float = 1.0
    delay_s: float = 0.0

    def before_task(self, kind: str, done: int) -> None:
        """Called before each task with the number of tasks finished so far."""

    def after_task(self, kind: str, done: int, elapsed_s: float) -> None:
        """Called after each task; may sleep (slow worker) or kill the process."""
        if self.slowdown > 1.0:
            time.sleep(elapsed_s * (self.slowdown - 1.0))
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        if self.die_after_tasks is not None and done >= self.die_after_tasks \
                and (self.die_in_phase is None or self.die_in_phase == kind):
            os._exit(1)


@dataclass(frozen=True)
class MasterChaos:
    """Faults the primary master injects: exit abruptly while committing its
    ``die_after_completions``-th completion, before any snapshot of it (so completions
    since the last snapshot are lost, as in a real crash)."""

    die_after_completions: int | None = None


@dataclass(frozen=True)
class ChaosPlan:
    """Faults to inject into one run (tests and demos): per-worker-number and master faults."""

    workers: dict[int, WorkerChaos] = field(default_factory=dict)
    master: MasterChaos = field(default_factory=MasterChaos)
