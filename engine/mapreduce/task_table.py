"""The master's task table: every map and reduce task with its state, attempts and outputs.

It is plain data with no Ray in it, so it is unit-tested directly and serialized to JSON
for snapshots.  Each task is idle, in progress (one or more running attempts: backups
of stragglers run beside the original) or completed (by exactly one attempt, whose
output location is recorded).  A reply from an attempt that is no longer running is
refused, so a late or duplicate completion never counts twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable

from engine.io.splits import InputSplit


class TaskState(str, Enum):
    """The three states of the paper's task table."""

    IDLE = "idle"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"


@dataclass
class Task:
    """One map or reduce task.

    ``attempt`` is the number of the newest attempt started (1-based; 0 = never started).
    ``running`` maps attempt numbers to the worker running them.  ``location`` is where a
    completed task's output is: the worker holding a map's partitions, or a reduce's part.
    ``executions`` counts attempts that ran to completion (a task that ran exactly once
    has 1).
    """

    task_id: str
    kind: str
    index: int
    split: InputSplit | None = None
    state: TaskState = TaskState.IDLE
    attempt: int = 0
    running: dict[int, str] = field(default_factory=dict)
    started_at: dict[int, float] = field(default_factory=dict)
    completed_attempt: int | None = None
    location: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    executions: int = 0
    failures: int = 0
    speculative_attempts: int = 0

    def to_json(self) -> dict:
        """A JSON-safe dict of this task (running attempts are not kept: they die with a master)."""
        return {
            "task_id": self.task_id, "kind": self.kind, "index": self.index,
            "split": self.split.to_json() if self.split else None,
            "state": self.state.value, "attempt": self.attempt,
            "completed_attempt": self.completed_attempt, "location": self.location,
            "counters": dict(self.counters), "details": self.details, "executions": self.executions,
            "failures": self.failures, "speculative_attempts": self.speculative_attempts,
        }

    @staticmethod
    def from_json(data: dict) -> "Task":
        """Inverse of ``to_json``; an in-progress task comes back idle (its attempt died)."""
        state = TaskState(data["state"])
        return Task(
            task_id=str(data["task_id"]), kind=str(data["kind"]), index=int(data["index"]),
            split=InputSplit.from_json(data["split"]) if data.get("split") else None,
            state=TaskState.IDLE if state is TaskState.IN_PROGRESS else state,
            attempt=int(data["attempt"]), completed_attempt=data.get("completed_attempt"),
            location=data.get("location"), counters={k: int(v) for k, v in data.get("counters", {}).items()},
            details=dict(data.get("details", {})), executions=int(data.get("executions", 0)),
            failures=int(data.get("failures", 0)), speculative_attempts=int(data.get("speculative_attempts", 0)),
        )


class TaskTable:
    """All tasks of one job, with the transitions the master makes."""

    def __init__(self, tasks: Iterable[Task]) -> None:
        self.tasks: dict[str, Task] = {t.task_id: t for t in tasks}

    @staticmethod
    def for_job(splits: list[InputSplit], reducers: int) -> "TaskTable":
        """A fresh table: one map task per split, one reduce task per partition."""
        maps = [Task(f"map-{i:05d}", "map", i, split=s) for i, s in enumerate(splits)]
        reduces = [Task(f"reduce-{r:05d}", "reduce", r) for r in range(reducers)]
        return TaskTable(maps + reduces)

    def of_kind(self, kind: str) -> list[Task]:
        """Tasks of one kind in index order."""
        return [t for t in self.tasks.values() if t.kind == kind]

    def phase_done(self, kind: str) -> bool:
        """True when every task of this kind is completed."""
        return all(t.state is TaskState.COMPLETED for t in self.of_kind(kind))

    def next_idle(self, kind: str) -> Task | None:
        """The idle task of this kind with the lowest index."""
        for task in self.of_kind(kind):
            if task.state is TaskState.IDLE:
                return task
        return None

    def start(self, task_id: str, worker: str, now: float | None = None, speculative: bool = False) -> int:
        """Start a new attempt of a task on ``worker`` and return its attempt number."""
        task = self.tasks[task_id]
        task.attempt += 1
        task.running[task.attempt] = worker
        task.started_at[task.attempt] = time.monotonic() if now is None else now
        task.state = TaskState.IN_PROGRESS
        if speculative:
            task.speculative_attempts += 1
        return task.attempt

    def complete(self, task_id: str, attempt: int, location: str, counters: dict[str, int],
                 details: dict | None = None) -> bool:
        """Record a finished attempt; False (and no change) if that attempt is not running.

        The first attempt to finish wins; the task's other running attempts are returned
        to the caller through ``losers`` to cancel.
        """
        task = self.tasks[task_id]
        if attempt not in task.running or task.state is TaskState.COMPLETED:
            task.running.pop(attempt, None)
            return False
        task.running.pop(attempt)
        task.state = TaskState.COMPLETED
        task.completed_attempt = attempt
        task.location = location
        task.counters = dict(counters)
        task.details = dict(details or {})
        task.executions += 1
        return True

    def losers(self, task_id: str) -> dict[int, str]:
        """Attempts still running for a completed task (backups that lost the race)."""
        task = self.tasks[task_id]
        losers = dict(task.running)
        task.running.clear()
        return losers

    def end_attempt(self, task_id: str, attempt: int) -> bool:
        """An attempt ended without completing the task (and through no fault of the task:
        its worker died, or its input was lost); the task goes back to idle if nothing else
        runs it.  False if that attempt was not running."""
        task = self.tasks[task_id]
        ended = task.running.pop(attempt, None) is not None
        if task.state is TaskState.IN_PROGRESS and not task.running:
            task.state = TaskState.IDLE
        return ended

    def fail(self, task_id: str, attempt: int) -> Task:
        """An attempt failed; it counts as a failure of the task (if it was running), and
        the task goes back to idle if nothing else is running it."""
        if self.end_attempt(task_id, attempt):
            self.tasks[task_id].failures += 1
        return self.tasks[task_id]

    def lose_output(self, task_id: str) -> None:
        """A completed map's output is gone (its worker died): run it again."""
        task = self.tasks[task_id]
        if task.state is TaskState.COMPLETED:
            task.state = TaskState.IN_PROGRESS if task.running else TaskState.IDLE
            task.location = None
            task.completed_attempt = None

    def worker_lost(self, worker: str) -> list[str]:
        """Handle a dead worker; return the ids of tasks that must run again.

        Its running attempts end; completed map outputs it held are lost unless every
        reduce task is already done (then nobody needs them).
        """
        affected = []
        reduces_done = self.phase_done("reduce")
        for task in self.tasks.values():
            for attempt, holder in list(task.running.items()):
                if holder == worker:
                    task.running.pop(attempt)
                    affected.append(task.task_id)
            if task.state is TaskState.IN_PROGRESS and not task.running:
                task.state = TaskState.IDLE
            if (task.kind == "map" and task.state is TaskState.COMPLETED and task.location == worker
                    and not reduces_done):
                self.lose_output(task.task_id)
                affected.append(task.task_id)
        return sorted(set(affected))

    def map_locations(self) -> dict[str, list[tuple[str, int]]]:
        """Completed map outputs grouped by the worker holding them: worker -> [(task, attempt)]."""
        locations: dict[str, list[tuple[str, int]]] = {}
        for task in self.of_kind("map"):
            if task.state is TaskState.COMPLETED and task.location is not None:
                locations.setdefault(task.location, []).append((task.task_id, int(task.completed_attempt or 0)))
        return locations

    def counts(self, kind: str) -> dict[str, int]:
        """How many tasks of this kind are in each state."""
        counts = {state.value: 0 for state in TaskState}
        for task in self.of_kind(kind):
            counts[task.state.value] += 1
        return counts

    def to_json(self) -> list[dict]:
        """Every task as JSON-safe data, in id order."""
        return [self.tasks[k].to_json() for k in sorted(self.tasks)]

    @staticmethod
    def from_json(data: list[dict]) -> "TaskTable":
        """Inverse of ``to_json``."""
        return TaskTable(Task.from_json(item) for item in data)
