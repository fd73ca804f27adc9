"""The MapReduce master actor: owns the task table, schedules, detects failures.

One primary master runs the job; an optional standby master (the same class) watches
it and takes over from the newest snapshot if it dies.  Workers and masters are
detached named actors created by whoever runs the job, so no master failure takes the
workers (and the map outputs they hold) down with it; the job handle removes them when
the job ends.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import ray

from engine.io.parts import part_name, write_success
from engine.mapreduce.rules import check_bad_records, commit_dead_letters
from engine.testing.chaos import MasterChaos, WorkerChaos
from engine.mapreduce.counters import add_counters
from engine.mapreduce.snapshot import SnapshotStore
from engine.mapreduce.spec import MapReduceJob
from engine.mapreduce.task_table import TaskState, TaskTable
from engine.mapreduce.worker import MapOutputLostError
from engine.errors import JobFailedError

@dataclass(frozen=True)
class MasterConfig:
    """Everything a master needs to run (or take over) one job."""

    job_id: str
    namespace: str
    output: str
    reducers: int
    workers: int
    snapshot_dir: str
    fingerprint: str  # computed once, in the driver, so every master agrees on it
    worker_chaos: dict[int, WorkerChaos] = field(default_factory=dict)
    master_chaos: MasterChaos = field(default_factory=MasterChaos)


class JobCoordinator:
    """One job's master logic (task table, scheduling, failure handling, snapshots).

    It lives inside a ``MapReduceMaster`` actor, which may host coordinators of several
    jobs; ``number`` orders a job's coordinators (0 = the first primary).
    """

    def __init__(self, host: Any) -> None:
        self.host = host
        self.role = "spare"
        self.name = "spare"
        self.table: TaskTable | None = None
        self.lock = threading.RLock()
        self.done = threading.Event()
        self.summary: dict | None = None
        self.error: str | None = None
        self.workers: dict[str, Any] = {}
        self.busy: dict[str, int] = {}
        self.next_worker = 0
        self.failed_workers: list[str] = []
        self.inflight: dict[Any, tuple[str, int, str, str]] = {}
        self.pings: dict[str, tuple[Any, float]] = {}
        self.starting: set[str] = set()
        self.orphans: dict[tuple[str, int], str] = {}
        self.last_orphan_poll = 0.0
        self.snapshot_seq = 0
        self.completions = 0
        self.completions_at_snapshot = 0
        self.last_snapshot = time.monotonic()
        self.started = time.time()
        self.takeover_at: float | None = None
        self.timeline: dict[str, float] = {}
        self.events: list[str] = []

    # ----- roles ---------------------------------------------------------------------------

    def assign(self, job: MapReduceJob, config: MasterConfig, number: int) -> str:
        """Bind this master to one job; returns its display name."""
        self.job = job
        self.config = config
        self.number = number
        self.name = f"{config.job_id}-master-{number}"
        self.role = "standby"
        self.options = job.options
        self.store = SnapshotStore(config.snapshot_dir, job.name, config.fingerprint)
        self.pool = None
        return self.name

    def start_primary(self, job: MapReduceJob, config: MasterConfig, number: int, table: list[dict] | None,
                      worker_names: list[str]) -> dict | None:
        """Become the primary of ``job``: adopt a task table (or a fresh one), run the job
        and return its summary (raises ``JobFailedError`` if it failed)."""
        self.assign(job, config, number)
        self.started = time.time()
        with self.lock:
            if table is not None:
                self.table = TaskTable.from_json(table)
            self.role = "primary"
        self._run(worker_names)
        return self.wait_done()

    def standby(self, job: MapReduceJob, config: MasterConfig, number: int, primaries: list) -> dict | None:
        """Be the standby of ``job``: watch the primary (``primaries[0]``, a handle in a list
        so Ray passes it as is); when it dies, take over from the newest snapshot and return
        the job's summary.  Returns None when the primary finished the job itself."""
        self.assign(job, config, number)
        self._watch(primaries[0])
        return self.wait_done(0) if self.role == "primary" else None

    def _watch(self, handle: Any) -> None:
        misses = 0
        while not self.done.is_set():
            try:
                state = ray.get(handle.ping.remote(self.config.job_id), timeout=self.options.heartbeat_timeout_s)
                misses = 0
                if state.get("done"):
                    self.done.set()
                    return
            except ray.exceptions.GetTimeoutError:
                misses += 1
                if misses < 2:
                    continue
                ray.kill(handle, no_restart=True)
            except ray.exceptions.RayError:
                pass
            else:
                time.sleep(self.options.heartbeat_interval_s)
                continue
            self._take_over()
            return

    def _take_over(self) -> None:
        snapshot = self.store.latest()
        self.takeover_at = time.time()
        self.started = self.takeover_at
        with self.lock:
            self.role = "primary"
            if snapshot is None:
                self.table = None
                names: list[str] = []
                self.events.append("takeover without snapshot: starting the job from the beginning")
            else:
                self.table = TaskTable.from_json(snapshot.state["tasks"])
                self.snapshot_seq = snapshot.seq
                self.next_worker = int(snapshot.state.get("next_worker", 0))
                self.failed_workers = list(snapshot.state.get("failed_workers", []))
                names = list(snapshot.state.get("workers", []))
                self.events.append(f"took over from snapshot {snapshot.seq}")
        threading.Thread(target=self._start_standby, daemon=True).start()
        self._run(names)

    def _start_standby(self) -> None:
        """After a takeover, a new standby watches this master in turn."""
        from engine.runtime.supervisor import get_pool

        try:
            standby = ray.get(get_pool().take_masters.remote(1, [self.host], False))[0]
            standby.standby.remote(self.job, self.config, self.number + 1, [self.host])
            self.standbys = [standby]
        except ray.exceptions.RayError as error:
            self.events.append(f"could not start a new standby: {error}")

    def peers(self) -> list:
        """Masters this one started (a new standby after a takeover)."""
        return list(getattr(self, "standbys", []))

    def ping(self) -> dict:
        """Liveness of this master."""
        return {"master": self.name, "role": self.role, "done": self.done.is_set()}

    def wait_done(self, timeout_s: float | None = None) -> dict | None:
        """Block until the job ends here; return its summary or raise ``JobFailedError``."""
        if not self.done.wait(timeout_s):
            return None
        if self.error is not None:
            raise JobFailedError(self.error)
        return self.summary

    # ----- the scheduling loop ----------------------------------------------------------------

    def _run(self, worker_names: list[str]) -> None:
        try:
            self.job_ref = ray.put(self.job)  # one copy in the object store, not one per task
            from engine.runtime.supervisor import get_pool

            self.pool = get_pool()
            with self.lock:
                if self.table is None:
                    self.table = TaskTable.for_job(self.job.source.plan_splits(), self.config.reducers)
                self._adopt_workers(worker_names)
                self._verify_outputs()
                self._adopt_attempts()
                self._spawn_workers()
            self._mark("workers ready")
            while not getattr(self, "cancelled", False):
                with self.lock:
                    if self.table.phase_done("map") and "maps done" not in self.timeline:
                        self._mark("maps done")
                    if self.table.phase_done("map") and self.table.phase_done("reduce"):
                        self._mark("reduces done")
                        break
                    self._schedule()
                refs = list(self.inflight)
                if refs:
                    ready, _ = ray.wait(refs, num_returns=1, timeout=self.options.heartbeat_interval_s)
                    if ready:
                        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                else:
                    ready = []
                    time.sleep(0.01)
                with self.lock:
                    for ref in ready:
                        self._on_reply(ref)
                    if self.orphans and time.monotonic() - self.last_orphan_poll >= self.options.heartbeat_interval_s / 2:
                        self.last_orphan_poll = time.monotonic()
                        self._poll_orphans()
                    self._heartbeat()
                    self._maybe_snapshot()
            if getattr(self, "cancelled", False):
                raise JobFailedError(f"job {self.config.job_id} was cancelled")
            self._finish()
            self._mark("finished")
        except JobFailedError as error:
            self.error = str(error)
        except Exception as error:  # the master must report, not vanish
            self.error = f"master failed: {type(error).__name__}: {error}\n{traceback.format_exc()}"
        finally:
            self.done.set()

    def _mark(self, event: str) -> None:
        """Record when a milestone of the job was reached (seconds since the master started)."""
        self.timeline[event] = round(time.time() - self.started, 4)

    def _adopt_workers(self, names: list[str]) -> None:
        """Reuse live workers (after a takeover); forget the dead ones."""
        for name in names:
            try:
                handle = ray.get_actor(name, namespace=self.config.namespace)
                ray.get(handle.ping.remote(), timeout=self.options.heartbeat_timeout_s)
            except (ValueError, ray.exceptions.RayError):
                self.failed_workers.append(name)
                self.table.worker_lost(name)
                continue
            self.workers[name] = handle
            self.busy[name] = 0

    def _adopt_attempts(self) -> None:
        """After a takeover: attempts the old primary started stay valid.

        A worker still running one reports it later (polled in ``_heartbeat``); one that
        finished after the last snapshot is accepted now, so neither runs again.
        """
        for name, handle in list(self.workers.items()):
            try:
                state = ray.get(handle.attempts.remote(self.config.job_id), timeout=self.options.heartbeat_timeout_s)
            except ray.exceptions.RayError:
                continue
            for report in state["done"]:
                task = self.table.tasks.get(report["task_id"])
                if task is not None and task.state is TaskState.IDLE and report["attempt"] == task.attempt:
                    task.running[task.attempt] = name
                    task.started_at[task.attempt] = time.monotonic()
                    self._accept(task.task_id, task.attempt, name, task.kind, report)
                    self.events.append(f"adopted finished attempt {task.attempt} of {task.task_id} on {name}")
            for task_id, attempt in state["running"]:
                task = self.table.tasks.get(task_id)
                if task is not None and task.state is TaskState.IDLE and attempt == task.attempt:
                    task.running[attempt] = name
                    task.started_at[attempt] = time.monotonic()
                    task.state = TaskState.IN_PROGRESS
                    self.orphans[(task_id, attempt)] = name
                    self.busy[name] = self.busy.get(name, 0) + 1
                    self.events.append(f"adopted running attempt {attempt} of {task_id} on {name}")

    def _poll_orphans(self) -> None:
        """Collect adopted attempts that have finished on their workers."""
        by_worker: dict[str, list[tuple[str, int]]] = {}
        for (task_id, attempt), worker in self.orphans.items():
            by_worker.setdefault(worker, []).append((task_id, attempt))
        for worker, keys in by_worker.items():
            handle = self.workers.get(worker)
            if handle is None:
                for key in keys:
                    self.orphans.pop(key, None)
                continue
            try:
                state = ray.get(handle.attempts.remote(self.config.job_id), timeout=self.options.heartbeat_timeout_s)
            except ray.exceptions.RayError:
                continue
            reports = {(r["task_id"], r["attempt"]): r for r in state["done"]}
            still_running = set(map(tuple, state["running"]))
            for key in keys:
                if key in reports:
                    self.orphans.pop(key)
                    self.busy[worker] = max(0, self.busy.get(worker, 1) - 1)
                    self._accept(key[0], key[1], worker, self.table.tasks[key[0]].kind, reports[key])
                elif key not in still_running:  # it failed with the old master: run it again
                    self.orphans.pop(key)
                    self.busy[worker] = max(0, self.busy.get(worker, 1) - 1)
                    self.table.fail(key[0], key[1])

    def _verify_outputs(self) -> None:
        """After a takeover: completed maps must still be held, completed reduces on disk."""
        for worker, keys in self.table.map_locations().items():
            held = [False] * len(keys)
            if worker in self.workers:
                try:
                    held = ray.get(self.workers[worker].holds.remote(self.config.job_id, keys),
                                   timeout=self.options.heartbeat_timeout_s)
                except ray.exceptions.RayError:
                    pass
            for (task_id, _), present in zip(keys, held):
                if not present:
                    self.table.lose_output(task_id)
        for task in self.table.of_kind("reduce"):
            if task.state is TaskState.COMPLETED and not os.path.exists(os.path.join(self.config.output, part_name(task.index))):
                task.state = TaskState.IDLE

    def _spawn_workers(self) -> None:
        """Lease workers from the pool until the job has its full count again."""
        missing = self.config.workers - len(self.workers)
        if missing <= 0:
            return
        if self.next_worker == 0:
            leased = self._pool_call("acquire", self.config.job_id, missing, self.config.worker_chaos)
            self.next_worker = missing
        else:
            leased = {}
            for _ in range(missing):
                chaos = self.config.worker_chaos.get(self.next_worker)
                dead = self.failed_workers[-1] if self.failed_workers else ""
                name, handle = self._pool_call("replace", self.config.job_id, dead, chaos)
                self.next_worker += 1
                leased[name] = handle
                self.events.append(f"started replacement worker {name}")
        for name, handle in leased.items():
            self.workers[name] = handle
            self.busy[name] = 0
            if self.next_worker > self.config.workers:
                self.starting.add(name)  # a fresh process: no tasks until it answers a ping

    def _pool_call(self, method: str, *args: Any) -> Any:
        """Call the worker pool, recreating it once if it died (e.g. with its node)."""
        from engine.runtime.supervisor import get_pool

        try:
            return ray.get(getattr(self.pool, method).remote(*args))
        except ray.exceptions.RayActorError:
            self.events.append("the worker pool died; starting a new one")
            self.pool = get_pool()
            return ray.get(getattr(self.pool, method).remote(*args))

    def _free_workers(self) -> list[str]:
        return sorted(n for n, b in self.busy.items() if b == 0 and n in self.workers and n not in self.starting)

    def _schedule(self) -> None:
        kind = "map" if not self.table.phase_done("map") else "reduce"
        for worker in self._free_workers():
            task = self.table.next_idle(kind)
            speculative = False
            if task is None:
                task = self._straggler(kind, worker)
                speculative = task is not None
            if task is None:
                return
            self._launch(task.task_id, worker, speculative)

    def _straggler(self, kind: str, worker: str):
        """The oldest single-attempt running task of the phase, when speculation applies."""
        if not self.options.speculation:
            return None
        tasks = self.table.of_kind(kind)
        done = sum(1 for t in tasks if t.state is TaskState.COMPLETED)
        if not tasks or done / len(tasks) < self.options.speculation_after:
            return None
        durations = sorted(t.details.get("elapsed_s", 0.0) for t in tasks if t.state is TaskState.COMPLETED)
        typical = durations[len(durations) // 2] if durations else 0.0
        threshold = max(self.options.speculation_min_s, 1.5 * typical)
        now = time.monotonic()
        candidates = [t for t in tasks if t.state is TaskState.IN_PROGRESS and len(t.running) == 1
                      and worker not in t.running.values() and t.speculative_attempts == 0
                      and now - min(t.started_at[a] for a in t.running) > threshold]
        if not candidates:
            return None
        return min(candidates, key=lambda t: min(t.started_at[a] for a in t.running))

    def _launch(self, task_id: str, worker: str, speculative: bool) -> None:
        task = self.table.tasks[task_id]
        attempt = self.table.start(task_id, worker, speculative=speculative)
        handle = self.workers[worker]
        if task.kind == "map":
            ref = handle.run_map.remote(self.job_ref, self.config.job_id, task_id, attempt, task.split.to_json(), self.config.reducers)
        else:
            sources = {name: (self.workers[name], keys) for name, keys in self.table.map_locations().items()}
            ref = handle.run_reduce.remote(self.job_ref, self.config.job_id, task_id, attempt, task.index, sources, self.config.output)
        self.inflight[ref] = (task_id, attempt, worker, task.kind)
        self.busy[worker] += 1
        if speculative:
            self.events.append(f"speculative attempt {attempt} of {task_id} on {worker}")

    # ----- replies and failures ------------------------------------------------------------

    def _on_reply(self, ref: Any) -> None:
        task_id, attempt, worker, kind = self.inflight.pop(ref)
        if worker in self.busy:
            self.busy[worker] = max(0, self.busy[worker] - 1)
        try:
            report = ray.get(ref)
        except ray.exceptions.TaskCancelledError:  # a backup attempt that lost the race
            return
        except ray.exceptions.RayActorError:
            self._worker_failed(worker, "died")
            return
        except ray.exceptions.RayTaskError as error:
            self._task_failed(task_id, attempt, worker, error)
            return
        if worker not in self.workers or report.get("stale"):  # a dead worker's or a finished job's reply
            return
        self._accept(task_id, attempt, worker, kind, report)

    def _accept(self, task_id: str, attempt: int, worker: str, kind: str, report: dict) -> None:
        """Record a finished attempt (first to finish wins) and cancel the losers."""
        location = worker if kind == "map" else report["path"]
        details = {"elapsed_s": report["elapsed_s"], "worker": worker}
        if kind == "map":
            details["input_bytes"] = report["input_bytes"]
        if not self.table.complete(task_id, attempt, location, report["counters"], details):
            if kind == "map":
                handle = self.workers.get(worker)
                if handle is not None:
                    handle.drop.remote(self.config.job_id, [(task_id, attempt)])
            return
        commit_dead_letters(self.config.output, task_id, report["dead_letters"])
        for loser_attempt, loser_worker in self.table.losers(task_id).items():
            for other, (tid, att, _, _) in list(self.inflight.items()):
                if tid == task_id and att == loser_attempt:
                    ray.cancel(other)
        self.completions += 1
        chaos = self.config.master_chaos
        if (self.number == 0 and chaos.die_after_completions is not None
                and self.completions >= chaos.die_after_completions):
            self._write_snapshot()
            os._exit(1)

    def _task_failed(self, task_id: str, attempt: int, worker: str, error: Exception) -> None:
        cause = getattr(error, "cause", None)
        if isinstance(cause, MapOutputLostError):
            self.table.fail(task_id, attempt)
            self.table.tasks[task_id].failures -= 1  # not the reduce's fault
            for name in cause.workers:
                if name in self.workers:
                    self._check_worker(name)
            for lost in cause.lost:
                location = self.table.tasks[lost].location
                if location is None or location not in self.workers:
                    self.table.lose_output(lost)
            return
        task = self.table.fail(task_id, attempt)
        message = str(cause) if cause is not None else str(error)
        self.events.append(f"{task_id} attempt {attempt} failed on {worker}: {message[:200]}")
        if task.failures >= self.options.max_task_attempts:
            raise JobFailedError(f"task {task_id} failed {task.failures} times; last error: "
                                 f"{type(cause).__name__ if cause else 'error'}: {message.splitlines()[0] if message else ''}")

    def _check_worker(self, name: str) -> None:
        try:
            ray.get(self.workers[name].ping.remote(), timeout=self.options.heartbeat_timeout_s)
        except ray.exceptions.RayError:
            self._worker_failed(name, "unreachable")

    def _worker_failed(self, name: str, why: str) -> None:
        if name not in self.workers:
            return
        handle = self.workers.pop(name)
        self.busy.pop(name, None)
        self.pings.pop(name, None)
        self.failed_workers.append(name)
        self.events.append(f"worker {name} {why}; its tasks go back to idle")
        try:
            ray.kill(handle, no_restart=True)
        except Exception:
            pass
        for ref, (_, _, worker, _) in list(self.inflight.items()):
            if worker == name:
                self.inflight.pop(ref)
        self.table.worker_lost(name)
        self._spawn_workers()

    def _heartbeat(self) -> None:
        now = time.monotonic()
        for name, handle in list(self.workers.items()):
            pending = self.pings.get(name)
            if pending is None:
                self.pings[name] = (handle.ping.remote(), now)
                continue
            ref, sent = pending
            ready, _ = ray.wait([ref], timeout=0)
            if ready:
                try:
                    ray.get(ref)
                    self.pings.pop(name)
                    self.starting.discard(name)
                except ray.exceptions.RayError:
                    self._worker_failed(name, "died")
            elif now - sent > self.options.heartbeat_timeout_s * (6 if name in self.starting else 1):
                self._worker_failed(name, f"missed its heartbeat deadline ({self.options.heartbeat_timeout_s}s)")

    # ----- snapshots, dead letters, the end ---------------------------------------------------

    def _state(self) -> dict:
        return {"tasks": self.table.to_json(), "workers": sorted(self.workers), "next_worker": self.next_worker,
                "failed_workers": self.failed_workers, "reducers": self.config.reducers}

    def _write_snapshot(self) -> None:
        self.snapshot_seq += 1
        self.store.write(self.snapshot_seq, self._state())
        self.completions_at_snapshot = self.completions
        self.last_snapshot = time.monotonic()

    def _maybe_snapshot(self) -> None:
        changed = self.completions > self.completions_at_snapshot
        if changed and (self.completions - self.completions_at_snapshot >= self.options.snapshot_every_tasks
                        or time.monotonic() - self.last_snapshot >= self.options.snapshot_every_s):
            self._write_snapshot()

    def _finish(self) -> None:
        total: Counter = Counter()
        for task in self.table.tasks.values():
            add_counters(total, task.counters)
        check_bad_records(total, self.options.max_bad_record_fraction)
        counters = dict(total)
        elapsed = time.time() - self.started
        self.summary = {
            "job": self.job.name, "job_id": self.config.job_id, "fingerprint": self.config.fingerprint,
            "executor": "ray", "master": self.name, "counters": counters, "elapsed_s": elapsed,
            "map_tasks": len(self.table.of_kind("map")), "reduce_tasks": len(self.table.of_kind("reduce")),
            "attempts": {t.task_id: t.attempt for t in self.table.tasks.values()},
            "executions": {t.task_id: t.executions for t in self.table.tasks.values()},
            "task_workers": {t.task_id: t.details.get("worker") for t in self.table.tasks.values()},
            "workers": sorted(self.workers),
            "failed_workers": self.failed_workers, "snapshot_seq": self.snapshot_seq,
            "speculative_attempts": sum(t.speculative_attempts for t in self.table.tasks.values()),
            "takeover": self.takeover_at is not None, "events": self.events[-200:], "timeline": self.timeline,
            "started_at": self.started,
        }
        write_success(self.config.output, {k: v for k, v in self.summary.items() if k != "events"})
        self.store.clear()
        self.pool.release.remote(self.config.job_id)

    # ----- observability ----------------------------------------------------------------------

    def status(self, tasks: bool = False) -> dict:
        """Progress and health: phase, per-phase task counts, bytes, workers, snapshots."""
        with self.lock:
            if self.table is None:
                return {"master": self.name, "role": self.role, "state": "starting"}
            maps, reduces = self.table.of_kind("map"), self.table.of_kind("reduce")
            bytes_total = sum(t.split.size_bytes() for t in maps if t.split)
            bytes_done = sum(t.split.size_bytes() for t in maps if t.split and t.state is TaskState.COMPLETED)
            state = "running"
            if self.done.is_set():
                state = "failed" if self.error else "succeeded"
            status = {
                "master": self.name, "role": self.role, "state": state,
                "phase": "map" if not self.table.phase_done("map") else ("reduce" if not self.table.phase_done("reduce") else "done"),
                "maps": self.table.counts("map"), "reduces": self.table.counts("reduce"),
                "bytes_total": bytes_total, "bytes_done": bytes_done,
                "workers": sorted(self.workers), "failed_workers": list(self.failed_workers),
                "replaced_workers": max(0, self.next_worker - self.config.workers),
                "snapshot_seq": self.snapshot_seq, "takeover": self.takeover_at is not None,
                "speculative_attempts": sum(t.speculative_attempts for t in self.table.tasks.values()),
                "skipped_records": sum(t.counters.get("bad_records_skipped", 0) for t in self.table.tasks.values()),
                "error": self.error.splitlines()[0] if self.error else None,
            }
            if tasks:
                status["tasks"] = [{"task_id": t.task_id, "state": t.state.value, "attempt": t.attempt,
                                    "running": dict(t.running), "executions": t.executions,
                                    "location": t.location} for t in self.table.tasks.values()]
            return status


@ray.remote(num_cpus=0, max_concurrency=64, max_restarts=0)
class MapReduceMaster:
    """A long-lived master process hosting the coordinators of one or more jobs.

    The worker pool keeps two of them, so submitting a job starts no process: one hosts
    the job's primary coordinator and the other its standby.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, JobCoordinator] = {}
        self.lock = threading.Lock()

    def _coordinator(self, job_id: str) -> JobCoordinator:
        with self.lock:
            if job_id not in self.jobs:
                self.jobs[job_id] = JobCoordinator(ray.get_runtime_context().current_actor)
            return self.jobs[job_id]

    def start_primary(self, job: MapReduceJob, config: MasterConfig, number: int, table: list[dict] | None,
                      worker_names: list[str]) -> dict | None:
        """Run ``job`` as its primary; returns the summary (see ``JobCoordinator``)."""
        return self._coordinator(config.job_id).start_primary(job, config, number, table, worker_names)

    def standby(self, job: MapReduceJob, config: MasterConfig, number: int, primaries: list) -> dict | None:
        """Stand by for ``job``; returns its summary if this master took over, else None."""
        return self._coordinator(config.job_id).standby(job, config, number, primaries)

    def take_over(self, job: MapReduceJob, config: MasterConfig, number: int) -> dict | None:
        """Continue ``job`` from its newest snapshot now (every earlier master is gone)."""
        coordinator = self._coordinator(config.job_id)
        coordinator.assign(job, config, number)
        coordinator._take_over()
        return coordinator.wait_done(0)

    def ping(self, job_id: str | None = None) -> dict:
        """Liveness of this master, and of one job's coordinator here."""
        coordinator = self.jobs.get(job_id) if job_id else None
        if coordinator is None:
            return {"master": "idle", "role": "none", "done": False}
        return coordinator.ping()

    def status(self, job_id: str, tasks: bool = False) -> dict:
        """The job's status as seen by its coordinator here."""
        coordinator = self.jobs.get(job_id)
        return coordinator.status(tasks) if coordinator else {"role": "none", "state": "unknown"}

    def wait_done(self, job_id: str, timeout_s: float | None = None) -> dict | None:
        """Block until the job ends here (see ``JobCoordinator.wait_done``)."""
        return self._coordinator(job_id).wait_done(timeout_s)

    def peers(self, job_id: str) -> list:
        """Masters the job's coordinator here started (a new standby after a takeover)."""
        coordinator = self.jobs.get(job_id)
        return coordinator.peers() if coordinator else []

    def forget(self, job_id: str) -> None:
        """Drop a finished (or cancelled) job's coordinator."""
        with self.lock:
            coordinator = self.jobs.pop(job_id, None)
        if coordinator is not None:
            coordinator.done.set()
            coordinator.cancelled = True
