"""Taking over a job from a snapshot, as scheduler transitions (no Ray).

A master that takes over (a standby whose primary died, or ``resume=True``) loads the
newest snapshot: its task table (attempts that were running come back idle) and the
workers the old primary had.  Each of those workers that still answers reports the
job's attempts it is running, the reports of those it finished, and the map outputs it
holds.  ``Takeover`` turns that into the new scheduler's state:

- a completed map stays completed only if its worker reported and still holds its output;
- an attempt a worker finished (and, for a map, still holds) completes its task if the
  snapshot does not already have it completed: it is not run again;
- an attempt a worker is still running is adopted: the new master waits for it (there is
  no reply to wait on, so it polls the worker: ``collect_adopted``) instead of running it
  again.

Until ``finish`` the scheduler is paused: nothing is launched while reports come in.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from engine.common.bad_records import ErrorDescription
from engine.mapreduce.actions import Action, AttemptReport, MapKey
from engine.mapreduce.scheduler import Scheduler, SchedulerConfig
from engine.mapreduce.snapshot import SnapshotPolicy
from engine.mapreduce.task_table import Task, TaskState, TaskTable


class Takeover:
    """Rebuilds a scheduler from a snapshot's state and the workers' reports."""

    def __init__(self, state: dict, config: SchedulerConfig, clock: Callable[[], float] = time.monotonic,
                 snapshots: SnapshotPolicy | None = None) -> None:
        self.scheduler = Scheduler(TaskTable.from_json(state["tasks"]), config, clock, snapshots)
        self.scheduler.lost = [str(name) for name in state.get("failed_workers", [])]
        self.scheduler.paused = True
        self.candidates: list[str] = [str(name) for name in state.get("workers", [])]
        self.reported: set[str] = set()
        self.actions: list[Action] = []

    def worker_reported(self, name: str, running: Iterable[MapKey], finished: Iterable[AttemptReport],
                        held: Iterable[MapKey]) -> None:
        """A worker of the old primary answered with its attempts and map outputs."""
        scheduler, table = self.scheduler, self.scheduler.table
        scheduler.worker_joined(name)
        if name not in scheduler.workers:
            return
        self.reported.add(name)
        held_keys = {(str(t), int(a)) for t, a in held}
        for task in table.of_kind("map"):
            if (task.state is TaskState.COMPLETED and task.location == name
                    and (task.task_id, task.completed_attempt) not in held_keys):
                self._lose(task)
        for report in finished:
            task = table.tasks.get(report.task_id)
            if (task is None or report.worker != name or task.state is TaskState.COMPLETED
                    or report.attempt in task.running
                    or (task.kind == "map" and (report.task_id, report.attempt) not in held_keys)):
                continue
            self._adopt(task, report.attempt, name)
            self.actions += scheduler.succeeded(report)
            scheduler.note(f"adopted finished attempt {report.attempt} of {task.task_id} on {name}")
        for task_id, attempt in running:
            task = table.tasks.get(str(task_id))
            if task is None or task.state is TaskState.COMPLETED or int(attempt) in task.running:
                continue
            self._adopt(task, int(attempt), name)
            scheduler.adopted.add((task.task_id, int(attempt)))
            scheduler.note(f"adopted running attempt {attempt} of {task.task_id} on {name}")

    def worker_unreachable(self, name: str) -> None:
        """A worker of the old primary did not answer: it counts as lost."""
        if name not in self.scheduler.lost and name not in self.scheduler.workers:
            self.scheduler.lost.append(name)
            self.scheduler.note(f"worker {name} did not answer the takeover")

    def finish(self) -> tuple[Scheduler, list[Action]]:
        """End the adoption: maps whose worker did not report are lost; scheduling starts.
        Returns the scheduler and the actions to perform."""
        scheduler = self.scheduler
        for task in scheduler.table.of_kind("map"):
            if task.state is TaskState.COMPLETED and task.location not in self.reported:
                self._lose(task)
        scheduler.paused = False
        return scheduler, self.actions + scheduler.tick()

    def _lose(self, task: Task) -> None:
        if not self.scheduler.table.phase_done("reduce"):  # else nobody needs the output
            self.scheduler.table.lose_output(task.task_id)

    def _adopt(self, task: Task, attempt: int, worker: str) -> None:
        # New attempts get numbers above any the old primary handed out that we know of.
        task.attempt = max(task.attempt, attempt)
        task.running[attempt] = worker
        task.started_at[attempt] = self.scheduler.clock()
        task.state = TaskState.IN_PROGRESS


def collect_adopted(scheduler: Scheduler, worker: str, running: Iterable[MapKey],
                    finished: Iterable[AttemptReport]) -> list[Action]:
    """A worker's current report, for the attempts adopted from the old primary that run
    on it: finished ones complete their tasks; ones neither running nor finished there
    ended without a report (they failed) and run again."""
    reports = {(r.task_id, r.attempt): r for r in finished}
    still_running = {(str(t), int(a)) for t, a in running}
    actions: list[Action] = []
    scheduler.paused = True  # one report, one decision: launch only once all of it is in
    try:
        for key in sorted(scheduler.adopted):
            task = scheduler.table.tasks[key[0]]
            if task.running.get(key[1]) != worker:
                continue
            if key in reports:
                actions += scheduler.succeeded(reports[key])
            elif key not in still_running:
                actions += scheduler.failed(key[0], key[1], worker, ErrorDescription(
                    "AttemptLost", f"attempt {key[1]} of {key[0]} ended on {worker} without a report"))
    finally:
        scheduler.paused = False
    return actions + scheduler.tick()


def adopted_workers(scheduler: Scheduler) -> list[str]:
    """Workers running adopted attempts (the ones to poll)."""
    names = {scheduler.table.tasks[t].running.get(a) for t, a in scheduler.adopted}
    return sorted(name for name in names if name is not None)
