"""The MapReduce scheduler: a pure state machine over the task table (no Ray).

The executor tells it what happened (a worker joined, became ready or was lost; an
attempt succeeded or failed; a reduce could not fetch map outputs; time passed) and each
call returns the actions to perform (``engine.mapreduce.actions``).  The Ray master and
the inline executor both drive this class, so the choice of tasks, retries, speculation,
counters, the bad-record limit and the commit rules are the same in both.

The rules (after Dean & Ghemawat 2004):

- an idle task goes to the least-loaded ready worker (ties by name); maps first, and
  reduces only once every map is completed;
- near the end of a phase (``speculation_after`` of its tasks done) a free worker gets a
  backup attempt of a task that has run longer than ``max(speculation_min_s, 1.5 x the
  phase's median task time)``; the first attempt to finish wins, the others are cancelled;
- a reply is accepted only from the attempt the scheduler is running on that worker: a
  late, duplicate or stale reply (or one from a lost worker) is refused;
- a failed attempt is retried until the task has failed ``max_task_attempts`` times, and
  then the job fails naming the task and the error;
- a lost worker's running attempts end (no failure counted) and the completed map
  outputs it held go back to idle, unless every reduce is already done;
- a reduce that could not fetch map outputs is not blamed: the named maps run again.

Taking over from a snapshot lives in ``engine.mapreduce.takeover``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable

from engine.common.bad_records import ErrorDescription
from engine.errors import JobFailedError
from engine.mapreduce.actions import (Action, AttemptReport, Cancel, CheckWorker, Commit, DropOutput, Fail, Finish,
                                      Launch, MapKey, TakeSnapshot)
from engine.mapreduce.counters import add_counters
from engine.mapreduce.recovery_log import RecoveryLog
from engine.mapreduce.rules import check_bad_records, check_bad_records_so_far, check_part_schema
from engine.mapreduce.snapshot import SnapshotPolicy
from engine.mapreduce.spec import JobOptions
from engine.mapreduce.task_table import Task, TaskState, TaskTable


@dataclass(frozen=True)
class SchedulerConfig:
    """The scheduling settings of one job (see ``JobOptions`` for their meaning)."""

    max_task_attempts: int = 4
    speculation: bool = True
    speculation_after: float = 0.75
    speculation_min_s: float = 1.0
    max_bad_record_fraction: float = 0.01
    slots_per_worker: int = 1

    @staticmethod
    def from_options(options: JobOptions, speculation: bool | None = None) -> "SchedulerConfig":
        """The settings a job's ``JobOptions`` ask for (``speculation`` overrides theirs)."""
        return SchedulerConfig(
            max_task_attempts=options.max_task_attempts,
            speculation=options.speculation if speculation is None else speculation,
            speculation_after=options.speculation_after, speculation_min_s=options.speculation_min_s,
            max_bad_record_fraction=options.max_bad_record_fraction)


class Scheduler:
    """One job's scheduling state and rules; see the module docstring.

    ``workers`` maps each live worker to whether it is ready for work; ``lost`` lists the
    workers lost so far, in order; ``adopted`` holds the running attempts taken over from
    an earlier master (no reply will come for them: their workers are polled); while
    ``paused`` nothing is launched.  Once the job finished or failed (``outcome``), every
    event is refused and returns no action.
    """

    def __init__(self, table: TaskTable, config: SchedulerConfig, clock: Callable[[], float] = time.monotonic,
                 snapshots: SnapshotPolicy | None = None) -> None:
        self.table = table
        self.config = config
        self.clock = clock
        self.snapshots = snapshots
        self.workers: dict[str, bool] = {}
        self.lost: list[str] = []
        self.outcome: Finish | Fail | None = None
        self.events: list[str] = []
        self.paused = False
        self.adopted: set[MapKey] = set()
        self.part_schema: tuple[str, str] | None = None  # (task, schema) of the first reduce part accepted
        self.recovery = RecoveryLog()  # times in seconds since ``origin`` (this scheduler's start)
        self.origin = clock()

    def note(self, text: str) -> None:
        """Note what happened (for the job's summary); only the newest events are kept."""
        self.events.append(text)
        if len(self.events) > 1000:
            del self.events[:-500]

    # ----- workers ---------------------------------------------------------------------------

    def worker_joined(self, name: str, ready: bool = True) -> list[Action]:
        """A worker joined the job (``ready=False``: a fresh process, no work until ready)."""
        if self.outcome is not None or name in self.workers or name in self.lost:
            return []
        self.workers[name] = ready
        return self._progress()

    def worker_ready(self, name: str) -> list[Action]:
        """A starting worker answered: it may take work now."""
        if self.outcome is not None or name not in self.workers:
            return []
        self.workers[name] = True
        return self._progress()

    def worker_lost(self, name: str, why: str = "was lost", node: str | None = None,
                    node_dead: bool = False) -> list[Action]:
        """A worker is gone: its running attempts end, and the map outputs it held are
        lost (their maps run again) unless every reduce is done.  The loss goes into the
        recovery timeline (``node``: where it ran; ``node_dead``: Ray declared that node dead)."""
        if self.outcome is not None or name not in self.workers:
            return []
        del self.workers[name]
        self.lost.append(name)
        self.adopted = {key for key in self.adopted if self.table.tasks[key[0]].running.get(key[1]) != name}
        rerun = self.table.worker_lost(name)
        self.recovery.lost(name, why, self.clock(), tuple(rerun), node, node_dead, unix=time.time())
        self.note(f"worker {name} {why}; tasks to run again: {', '.join(rerun) or 'none'}")
        return self._progress()

    # ----- replies ---------------------------------------------------------------------------

    def _running(self, task_id: str, attempt: int, worker: str) -> Task | None:
        """The task if ``attempt`` is running on ``worker`` (else the reply is refused)."""
        task = self.table.tasks.get(task_id)
        if self.outcome is not None or task is None or worker not in self.workers:
            return None
        return task if task.running.get(attempt) == worker else None

    def succeeded(self, report: AttemptReport) -> list[Action]:
        """An attempt finished: the first attempt of a task to finish wins."""
        task = self._running(report.task_id, report.attempt, report.worker)
        if task is None:
            return self._refuse(report)
        actions = self._accept(task, report)
        return actions + self._progress()

    def _refuse(self, report: AttemptReport) -> list[Action]:
        """A reply nobody waits for; a map output it left on a live worker is dropped,
        unless it is the very output the task completed with (a duplicate reply)."""
        task = self.table.tasks.get(report.task_id)
        if (task is None or report.kind != "map" or report.worker not in self.workers or self.outcome is not None
                or (task.completed_attempt == report.attempt and task.location == report.worker)):
            return []
        return [DropOutput(report.worker, ((report.task_id, report.attempt),))]

    def _accept(self, task: Task, report: AttemptReport) -> list[Action]:
        if task.kind == "reduce" and report.schema:
            try:
                self.part_schema = check_part_schema(self.part_schema, task.task_id, report.schema)
            except JobFailedError as error:
                return self._fail(error)
        location = report.worker if task.kind == "map" else (report.path or "")
        details = {"elapsed_s": report.elapsed_s, "worker": report.worker}
        if task.kind == "map":
            details["input_bytes"] = report.input_bytes
        self.adopted.discard((task.task_id, report.attempt))
        self.table.complete(task.task_id, report.attempt, location, report.counters, details)
        self.recovery.completed(task.task_id, self.clock())
        actions: list[Action] = [Commit(report)]
        for attempt, worker in sorted(self.table.losers(task.task_id).items()):
            self.adopted.discard((task.task_id, attempt))
            actions.append(Cancel(task.task_id, attempt, worker))
        if self.snapshots is not None:
            self.snapshots.completed()
        if task.kind == "map":
            actions += self._check_bad_records() if self.table.phase_done("map") else self._check_bad_records_so_far()
        return actions

    def failed(self, task_id: str, attempt: int, worker: str, error: ErrorDescription) -> list[Action]:
        """An attempt failed: retry it, or fail the job once the task failed too often."""
        task = self._running(task_id, attempt, worker)
        if task is None:
            return []
        self.adopted.discard((task_id, attempt))
        self.table.fail(task_id, attempt)
        self.note(f"{task_id} attempt {attempt} failed on {worker}: {error.one_line()[:200]}")
        if task.failures >= self.config.max_task_attempts:
            return self._fail(JobFailedError(f"task {task_id} failed {task.failures} times; "
                                             f"last error: {error.one_line()}"))
        return self._progress()

    def map_output_lost(self, task_id: str, attempt: int, worker: str, lost: Iterable[MapKey],
                        suspects: Iterable[str] = ()) -> list[Action]:
        """A reduce attempt could not fetch the map outputs ``lost``: it is not blamed (it
        goes back to idle without a failure), the maps run again, and the workers that
        should have served them (``suspects``) are checked."""
        task = self._running(task_id, attempt, worker)
        if task is None:
            return []
        self.adopted.discard((task_id, attempt))
        self.table.end_attempt(task_id, attempt)
        lost = sorted({(str(map_id), int(map_attempt)) for map_id, map_attempt in lost})
        actions: list[Action] = []
        for map_id, map_attempt in lost:
            holder = self._lose_map_output(map_id, map_attempt)
            if holder is not None and holder in self.workers:
                actions.append(DropOutput(holder, ((map_id, map_attempt),)))
        self.note(f"{task_id} attempt {attempt} could not fetch map outputs {lost}")
        actions += [CheckWorker(name) for name in sorted(set(suspects)) if name in self.workers]
        return actions + self._progress()

    def _lose_map_output(self, map_id: str, attempt: int) -> str | None:
        """Forget a completed map's output if it is the one of ``attempt``; returns its holder."""
        task = self.table.tasks.get(map_id)
        if task is None or task.kind != "map" or task.state is not TaskState.COMPLETED \
                or task.completed_attempt != attempt:
            return None
        holder = task.location
        self.table.lose_output(map_id)
        return holder

    def output_missing(self, task_id: str) -> list[Action]:
        """A completed task's output is gone (a reduce's part vanished): run it again."""
        task = self.table.tasks.get(task_id)
        if self.outcome is not None or task is None or task.state is not TaskState.COMPLETED:
            return []
        task.state, task.location, task.completed_attempt = TaskState.IDLE, None, None
        return self._progress()

    def tick(self) -> list[Action]:
        """Time passed: backup attempts of stragglers, a snapshot when one is due."""
        return self._progress()

    # ----- choosing work ---------------------------------------------------------------------

    def _loads(self) -> dict[str, int]:
        loads = {name: 0 for name in self.workers}
        for task in self.table.tasks.values():
            for worker in task.running.values():
                if worker in loads:
                    loads[worker] += 1
        return loads

    def _progress(self) -> list[Action]:
        """Launch what can run, then finish, or snapshot if one is due."""
        if self.outcome is not None or self.paused:
            return []
        if self.table.phase_done("map") and self.table.phase_done("reduce"):
            return self._finish()
        actions: list[Action] = self._launches()
        if self.snapshots is not None and self.snapshots.due():
            self.snapshots.written()
            actions.append(TakeSnapshot(self.snapshot_state()))
        return actions

    def _launches(self) -> list[Action]:
        kind = "map" if not self.table.phase_done("map") else "reduce"
        loads = self._loads()
        launches: list[Action] = []
        while True:
            free = sorted((load, name) for name, load in loads.items()
                          if self.workers[name] and load < self.config.slots_per_worker)
            if not free:
                return launches
            task = self.table.next_idle(kind)
            speculative = task is None
            worker = free[0][1]
            if task is None:
                for _, name in free:
                    task = self._straggler(kind, name)
                    if task is not None:
                        worker = name
                        break
            if task is None:
                return launches
            launches.append(self._launch(task, worker, speculative))
            loads[worker] += 1

    def _straggler(self, kind: str, worker: str) -> Task | None:
        """The longest-running single-attempt task of the phase that deserves a backup on
        ``worker``, when speculation applies."""
        if not self.config.speculation:
            return None
        tasks = self.table.of_kind(kind)
        done = [t for t in tasks if t.state is TaskState.COMPLETED]
        if not tasks or len(done) / len(tasks) < self.config.speculation_after:
            return None
        durations = sorted(float(t.details.get("elapsed_s", 0.0)) for t in done)
        typical = durations[len(durations) // 2] if durations else 0.0
        threshold = max(self.config.speculation_min_s, 1.5 * typical)
        now = self.clock()
        candidates = [t for t in tasks if t.state is TaskState.IN_PROGRESS and len(t.running) == 1
                      and worker not in t.running.values() and t.speculative_attempts == 0
                      and now - t.started_at[next(iter(t.running))] > threshold]
        if not candidates:
            return None
        return min(candidates, key=lambda t: (t.started_at[next(iter(t.running))], t.task_id))

    def _launch(self, task: Task, worker: str, speculative: bool) -> Launch:
        attempt = self.table.start(task.task_id, worker, now=self.clock(), speculative=speculative)
        if speculative:
            self.note(f"speculative attempt {attempt} of {task.task_id} on {worker}")
        if task.kind == "map":
            return Launch(task.task_id, "map", attempt, worker, speculative, split=task.split)
        sources = {name: tuple(keys) for name, keys in self.table.map_locations().items()}
        return Launch(task.task_id, "reduce", attempt, worker, speculative, partition=task.index, sources=sources)

    # ----- the end ---------------------------------------------------------------------------

    def counters(self) -> Counter:
        """The job's counters so far: each completed task's accepted attempt, once."""
        total: Counter = Counter()
        for task in self.table.tasks.values():
            if task.state is TaskState.COMPLETED:
                add_counters(total, task.counters)
        return total

    def _check_bad_records(self) -> list[Action]:
        try:
            check_bad_records(self.counters(), self.config.max_bad_record_fraction)
        except JobFailedError as error:
            return self._fail(error)
        return []

    def _check_bad_records_so_far(self) -> list[Action]:
        maps = self.table.of_kind("map")
        weights = {t.task_id: max(1, t.split.size_bytes()) if t.split is not None else 1 for t in maps}
        done = sum(weights[t.task_id] for t in maps if t.state is TaskState.COMPLETED)
        try:
            check_bad_records_so_far(self.counters(), self.config.max_bad_record_fraction,
                                     done / max(1, sum(weights.values())))
        except JobFailedError as error:
            return self._fail(error)
        return []

    def _finish(self) -> list[Action]:
        failure = self._check_bad_records()
        if failure:
            return failure
        self.outcome = Finish(dict(self.counters()))
        return [self.outcome]

    def _fail(self, error: JobFailedError) -> list[Action]:
        self.outcome = Fail(error)
        self.note(f"job failed: {error}")
        return [self.outcome]

    # ----- views -----------------------------------------------------------------------------

    def snapshot_state(self) -> dict:
        """What a master taking over needs (JSON-safe): the task table and the workers."""
        return {"tasks": self.table.to_json(), "workers": sorted(self.workers), "failed_workers": list(self.lost)}

    def status(self) -> dict:
        """Phase, per-phase task counts, input bytes, speculation and skipped records."""
        maps = self.table.of_kind("map")
        state = "running"
        if isinstance(self.outcome, Finish):
            state = "succeeded"
        elif isinstance(self.outcome, Fail):
            state = "failed"
        phase = "map" if not self.table.phase_done("map") else (
            "reduce" if not self.table.phase_done("reduce") else "done")
        return {
            "state": state, "phase": phase, "maps": self.table.counts("map"), "reduces": self.table.counts("reduce"),
            "bytes_total": sum(t.split.size_bytes() for t in maps if t.split),
            "bytes_done": sum(t.split.size_bytes() for t in maps if t.split and t.state is TaskState.COMPLETED),
            "workers": sorted(self.workers), "failed_workers": list(self.lost),
            "speculative_attempts": sum(t.speculative_attempts for t in self.table.tasks.values()),
            "skipped_records": self.counters().get("bad_records_skipped", 0),
            "error": str(self.outcome.error).splitlines()[0] if isinstance(self.outcome, Fail) else None,
            "recovery": self.recovery.to_json(self.origin, self.clock()),
        }

    def summary(self) -> dict:
        """The job's task-level facts for its result: counters, task counts and bytes,
        attempts and executions per task."""
        tasks = self.table.tasks.values()
        status = self.status()
        return {
            **{key: status[key] for key in ("maps", "reduces", "bytes_total", "bytes_done")},
            "counters": dict(self.counters()), "map_tasks": len(self.table.of_kind("map")),
            "reduce_tasks": len(self.table.of_kind("reduce")),
            "attempts": {t.task_id: t.attempt for t in tasks},
            "executions": {t.task_id: t.executions for t in tasks},
            "task_workers": {t.task_id: t.details.get("worker") for t in tasks},
            "failed_workers": list(self.lost),
            "speculative_attempts": sum(t.speculative_attempts for t in tasks),
            "recovery": status["recovery"],
        }

