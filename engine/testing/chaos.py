"""Deterministic fault injection for MapReduce workers (tests, benchmarks and demos).

A ``WorkerChaos`` travels with a worker: it can kill the worker's process after its
k-th task, slow every task down by a factor, or stall after each task.  ``MasterChaos``
kills the primary master at one of several points of its n-th completion (and, after a
takeover, the standby that took over).  A ``ChaosPlan`` bundles them for one run:
``engine.run(job, chaos=ChaosPlan(...))``.  Records that poison user code are the user
map function's business (tests write such maps themselves).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.common.atomic_files import TEMP_PREFIX

MASTER_POINTS = ("commit", "snapshot", "reduce")


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
    """Faults the masters of a job inject into themselves (they exit abruptly, as in a crash).

    The first primary (master 0) dies at ``at`` of its ``die_after_completions``-th
    completion:

    - ``"commit"``: right after committing it, before any snapshot of it (completions
      since the last snapshot are lost);
    - ``"snapshot"``: in the middle of writing the first snapshot taken from then on (a
      torn temporary snapshot file is left behind, the snapshot itself never appears);
    - ``"reduce"``: like ``"commit"``, counting reduce completions only (so it dies in the
      reduce phase).

    ``standby_after_completions``: the master that took over (master 1) dies in turn
    right after committing this many completions of its own.
    """

    die_after_completions: int | None = None
    at: str = "commit"
    standby_after_completions: int | None = None

    def __post_init__(self) -> None:
        if self.at not in MASTER_POINTS:
            raise ValueError(f"MasterChaos.at must be one of {', '.join(MASTER_POINTS)}, got {self.at!r}")

    def after_commit(self, number: int, completions: int, reduce_completions: int) -> None:
        """Called by master ``number`` after committing a completion, with its counts so far."""
        if number == 0 and self.die_after_completions is not None and self.at != "snapshot":
            count = reduce_completions if self.at == "reduce" else completions
            if count >= self.die_after_completions:
                os._exit(1)
        if number == 1 and self.standby_after_completions is not None \
                and completions >= self.standby_after_completions:
            os._exit(1)

    def before_snapshot(self, number: int, completions: int, directory: str, state: dict) -> None:
        """Called by master ``number`` before it writes a snapshot of ``state`` into ``directory``."""
        if number == 0 and self.at == "snapshot" and self.die_after_completions is not None \
                and completions >= self.die_after_completions:
            Path(directory).mkdir(parents=True, exist_ok=True)
            torn = Path(directory, f"{TEMP_PREFIX}chaos-snapshot-{os.getpid()}.json")
            content = json.dumps(state, default=str).encode()
            torn.write_bytes(content[: len(content) // 2])  # what a crash in the middle of the write leaves
            os._exit(1)


@dataclass(frozen=True)
class ChaosPlan:
    """Faults to inject into one run (tests and demos): per-worker-number and master faults."""

    workers: dict[int, WorkerChaos] = field(default_factory=dict)
    master: MasterChaos = field(default_factory=MasterChaos)
