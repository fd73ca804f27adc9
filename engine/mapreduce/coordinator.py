"""One job's master logic on Ray: a thin shell between Ray calls and the pure cores.

The decisions are made by ``Scheduler`` (which task where, retries, speculation,
failures), ``Takeover`` (adopting a snapshot), ``HeartbeatMonitor`` (which workers to
ping, which are overdue) and ``SnapshotPolicy`` (when to snapshot).  This shell only
sends the calls they ask for (launch, cancel, drop, ping), turns the replies into
scheduler events, and commits what the scheduler accepts.  The worker pool (the
supervisor) is injected through ``MasterConfig``; this module never imports it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import traceback
from typing import Any

import ray

from engine.common.bad_records import describe_error
from engine.common.retry import RetryPolicy
from engine.errors import JobFailedError
from engine.mapreduce.actions import (Action, Cancel, CheckWorker, Commit, DropOutput, Fail, Finish, Launch,
                                      TakeSnapshot)
from engine.mapreduce.adoption import check_committed_parts, poll_candidates
from engine.mapreduce.config import MasterConfig
from engine.mapreduce.heartbeat import HeartbeatMonitor
from engine.mapreduce.node_state import NODE_CHECK_S, dead_nodes
from engine.mapreduce.rules import commit_dead_letters, commit_job
from engine.mapreduce.scheduler import Scheduler, SchedulerConfig
from engine.mapreduce.snapshot import SnapshotPolicy, SnapshotStore
from engine.mapreduce.spec import MapReduceJob
from engine.mapreduce.takeover import Takeover, adopted_workers, collect_adopted
from engine.mapreduce.task_table import TaskTable
from engine.mapreduce.worker_state import MapOutputLostError

# A pool that died (e.g. with its node) is looked up or started again once.
_POOL_RETRY = RetryPolicy(max_attempts=2, base_delay_s=0.0, jitter=0.0, retry_on=(ray.exceptions.RayActorError,))


class JobCoordinator:
    """One job's master in a ``MapReduceMaster`` process (``number`` 0 is the first primary)."""

    def __init__(self, host: Any, job: MapReduceJob, config: MasterConfig, number: int) -> None:
        self.host, self.job, self.config, self.number = host, job, config, number
        self.options = job.options
        self.name = f"{config.job_id}-master-{number}"
        self.role = "standby"
        self.store = SnapshotStore(config.snapshot_dir, job.name, config.fingerprint)
        self.pool = config.pool
        self.lock = threading.RLock()
        self.done = threading.Event()
        self.ended = threading.Event()  # run() has returned (its workers given back)
        self.cancelled = False
        self.scheduler: Scheduler | None = None
        self.summary: dict | None = None
        self.error: BaseException | None = None
        self.handles: dict[str, Any] = {}  # live workers of the job
        self.inflight: dict[Any, Launch] = {}  # attempt call -> its launch
        self.pings: dict[Any, str] = {}  # ping call -> worker
        self.polls: dict[Any, str] = {}  # attempts() call -> worker (adopted attempts)
        self.leases: dict[Any, str] = {}  # lease call still running -> worker (joins when it returns)
        self.nodes: dict[str, str] = {}  # worker -> the node it runs on (from its pings)
        self.last_node_check = 0.0
        self.monitor = HeartbeatMonitor(self.options.heartbeat_interval_s, self.options.heartbeat_timeout_s)
        self.last_poll = 0.0
        self.next_worker = 0  # workers leased so far: numbers the chaos plan refers to
        self.target_workers = config.workers  # how many the job keeps (set by its first lease)
        self.completions = 0
        self.reduce_completions = 0
        self.snapshot_seq = 0
        self.started = time.time()
        self.takeover_at: float | None = None
        self.timeline: dict[str, float] = {}
        self.events: list[str] = []
        self.standbys: list[Any] = []

    # ----- becoming the primary ----------------------------------------------------------------

    def run(self, state: dict | None, takeover: bool = False) -> None:
        """Be the primary: from a snapshot's ``state`` (a takeover or a resume) or from
        the start, until the job ends (``done`` is set; ``summary`` or ``error`` tell)."""
        try:
            self.role = "primary"
            if takeover:
                self.takeover_at = self.started = time.time()
            self.job_ref = ray.put(self.job)  # one copy in the object store, not one per task
            with self.lock:
                actions = self._adopt(state) if state is not None else self._fresh()
                actions += self._top_up()
            self._mark("workers ready")
            self._perform(actions)
            self._loop()
        except JobFailedError as error:
            self.error = error
        except Exception as error:  # the master must report, not vanish
            self.error = JobFailedError(f"master failed: {type(error).__name__}: {error}\n{traceback.format_exc()}")
        finally:
            if self.error is not None:
                self._release_workers()  # a failed or cancelled job gives its workers back too
            self.done.set()
            self.ended.set()

    def _new_scheduler_parts(self) -> tuple[SchedulerConfig, SnapshotPolicy]:
        return (dataclasses.replace(SchedulerConfig.from_options(self.options),
                                    slots_per_worker=self.config.slots_per_worker),
                SnapshotPolicy(self.options.snapshot_every_tasks, self.options.snapshot_every_s))

    def _fresh(self) -> list[Action]:
        config, policy = self._new_scheduler_parts()
        self.scheduler = Scheduler(TaskTable.for_job(self.job.source.plan_splits(), self.config.reducers), config,
                                   snapshots=policy)
        return []

    def _adopt(self, state: dict) -> list[Action]:
        """Continue from a snapshot: ask its workers what they hold and run (see Takeover)."""
        config, policy = self._new_scheduler_parts()
        takeover = Takeover(state, config, snapshots=policy)
        self.next_worker = int(state.get("next_worker", 0))
        self.target_workers = int(state.get("worker_count", self.config.workers))
        answered = poll_candidates(takeover, self.config.job_id, self.config.namespace,
                                   self.options.heartbeat_timeout_s)
        for name, handle in answered.items():
            self.handles[name] = handle
            self.monitor.add(name)
        check_committed_parts(takeover, self.config.output)
        self.scheduler, actions = takeover.finish()
        return actions

    # ----- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        interval = self.options.heartbeat_interval_s
        while True:
            with self.lock:
                if self.cancelled:
                    raise JobFailedError(f"job {self.config.job_id} was cancelled")
                if isinstance(self.scheduler.outcome, Finish):
                    return
            refs = [*self.inflight, *self.pings, *self.polls, *self.leases]
            ready: list = []
            if refs:
                ready, _ = ray.wait(refs, num_returns=1, timeout=interval)
                if ready:
                    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            else:
                time.sleep(0.01)
            with self.lock:
                actions: list[Action] = []
                for ref in ready:
                    actions += self._on_ready(ref)
                actions += self._heartbeat()
                actions += self.scheduler.tick()
                actions += self._top_up()
                self._perform(actions)

    def _on_ready(self, ref: Any) -> list[Action]:
        """Turn one finished Ray call into scheduler events."""
        if ref in self.leases:  # a worker of the first lease finished starting
            name = self.leases.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayError:
                return self._lose(name, "died while starting")
            self.monitor.add(name)
            return self.scheduler.worker_ready(name)
        if ref in self.pings:
            name = self.pings.pop(ref)
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError as error:
                return self._lose(name, f"died ({type(error).__name__})")
            if isinstance(info, dict) and info.get("node"):
                self.nodes[name] = str(info["node"])
            return self.scheduler.worker_ready(name) if self.monitor.answered(name) else []
        if ref in self.polls:
            name = self.polls.pop(ref)
            try:
                report = ray.get(ref)
            except ray.exceptions.RayError:
                return self._lose(name, "died")
            return collect_adopted(self.scheduler, name, report.running, report.finished)
        launch = self.inflight.pop(ref)
        try:
            report = ray.get(ref)
        except ray.exceptions.TaskCancelledError:  # a backup attempt that lost the race
            return []
        except ray.exceptions.RayActorError as error:
            return self._lose(launch.worker, f"died ({type(error).__name__})")
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, MapOutputLostError):
                return self.scheduler.map_output_lost(launch.task_id, launch.attempt, launch.worker, cause.lost,
                                                      cause.workers)
            return self.scheduler.failed(launch.task_id, launch.attempt, launch.worker, describe_error(error))
        return self.scheduler.succeeded(report) if report is not None else []

    def _heartbeat(self) -> list[Action]:
        actions: list[Action] = []
        if self.nodes and time.monotonic() - self.last_node_check >= NODE_CHECK_S:
            # Ray's node table: a worker whose node Ray declared dead is lost now, not at its
            # heartbeat deadline.
            self.last_node_check = time.monotonic()
            dead = dead_nodes()
            for name, node in list(self.nodes.items()):
                if node in dead and name in self.handles:
                    actions += self._lose(name, f"its node died ({dead[node]})", dead)
        for name in self.monitor.overdue():
            actions += self._lose(name, f"missed its heartbeat deadline ({self.options.heartbeat_timeout_s}s)")
        for name in self.monitor.due():
            self.pings[self.handles[name].ping.remote()] = name
        if self.scheduler.adopted and time.monotonic() - self.last_poll >= self.options.heartbeat_interval_s / 2:
            self.last_poll = time.monotonic()
            polling = set(self.polls.values())
            for name in adopted_workers(self.scheduler):
                if name in self.handles and name not in polling:
                    self.polls[self.handles[name].attempts.remote(self.config.job_id)] = name
        return actions

    def _lose(self, name: str, why: str, dead: dict[str, str] | None = None) -> list[Action]:
        handle = self.handles.pop(name, None)
        if handle is None:
            return []
        self.monitor.remove(name)
        try:
            ray.kill(handle, no_restart=True)
        except Exception:  # already gone
            pass
        node = self.nodes.pop(name, None)
        node_dead = node is not None and node in (dead if dead is not None else dead_nodes())
        return self.scheduler.worker_lost(name, why, node, node_dead)

    def _top_up(self) -> list[Action]:
        """Lease workers from the pool until the job has its full count again."""
        missing = self.target_workers - len(self.handles)
        if missing <= 0 or self.scheduler.outcome is not None:
            return []
        actions: list[Action] = []
        if self.next_worker == 0:
            # The first map starts once ``start_with_workers`` are leased; the others join
            # when their lease has run.  A fault plan names workers by number: then every
            # lease is awaited, so each numbered worker takes part from the start.
            first = None if self.config.worker_chaos else self.options.start_with_workers
            leased, pending = self._call_pool("acquire", self.config.job_id, missing, self.config.worker_chaos, first,
                                              self.config.new_workers, self.config.slots_per_worker)
            # The pool may lease fewer (``new_workers``): the job's count from now on.
            self.target_workers = len(self.handles) + len(leased) + len(pending)
            self.next_worker, starting = self.target_workers, False
            for name, (handle, lease) in pending.items():
                self.handles[name] = handle
                self.leases[lease] = name
                actions += self.scheduler.worker_joined(name, ready=False)
        else:
            leased, starting = {}, True  # a fresh process: no tasks until it answers a ping
            for _ in range(missing):
                chaos = self.config.worker_chaos.get(self.next_worker)
                dead = self.scheduler.lost[-1] if self.scheduler.lost else ""
                name, handle = self._call_pool("replace", self.config.job_id, dead, chaos,
                                               self.config.slots_per_worker)
                self.next_worker += 1
                leased[name] = handle
                self.events.append(f"started replacement worker {name}")
        for name, handle in leased.items():
            self.handles[name] = handle
            self.monitor.add(name, starting=starting)
            actions += self.scheduler.worker_joined(name, ready=not starting)
        return actions

    def _call_pool(self, method: str, *args: Any) -> Any:
        """Call the worker pool; if it died, find (or start) it again, once."""
        def once() -> Any:
            if self.pool is None:
                self.events.append("the worker pool died; finding a new one")
                self.pool = self.config.find_pool()
            try:
                return ray.get(getattr(self.pool, method).remote(*args))
            except ray.exceptions.RayActorError:
                self.pool = None
                raise

        return _POOL_RETRY.call(once)

    # ----- performing actions -------------------------------------------------------------------

    def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Launch):
                self._launch(action)
            elif isinstance(action, Commit):
                self._commit(action)
            elif isinstance(action, Cancel):
                for ref, launch in list(self.inflight.items()):
                    if (launch.task_id, launch.attempt) == (action.task_id, action.attempt):
                        ray.cancel(ref)
            elif isinstance(action, DropOutput) and action.worker in self.handles:
                self.handles[action.worker].drop.remote(self.config.job_id, list(action.keys))
            elif isinstance(action, CheckWorker) and action.worker in self.handles:
                if self.monitor.probe(action.worker):
                    self.pings[self.handles[action.worker].ping.remote()] = action.worker
            elif isinstance(action, TakeSnapshot):
                self._write_snapshot(action.state)
            elif isinstance(action, Finish):
                self._finish()
            elif isinstance(action, Fail):
                raise action.error

    def _launch(self, launch: Launch) -> None:
        handle = self.handles[launch.worker]
        if launch.kind == "map":
            ref = handle.run_map.remote(self.job_ref, self.config.job_id, launch.task_id, launch.attempt, launch.split,
                                        self.config.reducers)
        else:
            sources = {name: (self.handles[name], list(keys)) for name, keys in launch.sources.items()}
            ref = handle.run_reduce.remote(self.job_ref, self.config.job_id, launch.task_id, launch.attempt,
                                           launch.partition, sources, self.config.output)
        self.inflight[ref] = launch
        if self.scheduler.table.phase_done("map") and "maps done" not in self.timeline:
            self._mark("maps done")

    def _commit(self, commit: Commit) -> None:
        commit_dead_letters(self.config.output, commit.report.task_id, commit.report.dead_letters)
        self.completions += 1
        self.reduce_completions += commit.report.task_id.startswith("reduce")
        self.config.master_chaos.after_commit(self.number, self.completions, self.reduce_completions)

    def _write_snapshot(self, state: dict) -> None:
        self.snapshot_seq += 1
        state = {**state, "next_worker": self.next_worker, "worker_count": self.target_workers,
                 "reducers": self.config.reducers}
        self.config.master_chaos.before_snapshot(self.number, self.completions, self.store.directory, state)
        self.store.write(self.snapshot_seq, state)

    def _finish(self) -> None:
        self._mark("reduces done")
        summary = {
            "job": self.job.name, "job_id": self.config.job_id, "fingerprint": self.config.fingerprint,
            "executor": "ray", "master": self.name, "elapsed_s": time.time() - self.started,
            **self.scheduler.summary(), "workers": sorted(self.handles), "snapshot_seq": self.snapshot_seq,
            "takeover": self.takeover_at is not None, "timeline": self.timeline, "started_at": self.started,
            "events": (self.events[-100:] + self.scheduler.events[-200:]),
        }
        commit_job(self.config.output, summary)
        self.store.clear()
        self._mark("finished")
        self.summary = summary
        self._release_workers()

    def _release_workers(self) -> None:
        """Return the job's workers to the pool (else they would hold their CPUs, leased to
        a job that has ended, until their idle timeout)."""
        try:  # through a new pool if the one the job started with died
            self._call_pool("release", self.config.job_id)
        except Exception as error:  # the job has ended: its workers give their CPU back when idle anyway
            self.events.append(f"could not release the workers: {type(error).__name__}")

    def _mark(self, event: str) -> None:
        """Record when a milestone of the job was reached (seconds since the master started)."""
        self.timeline[event] = round(time.time() - self.started, 4)

    # ----- observability ------------------------------------------------------------------------

    def wait_done(self, timeout_s: float | None = None) -> dict | None:
        """Block until the job ends here; its summary, or raises its ``JobFailedError``."""
        if not self.done.wait(timeout_s):
            return None
        if self.error is not None:
            raise self.error
        return self.summary

    def status(self, tasks: bool = False) -> dict:
        """Progress and health: phase, per-phase task counts, bytes, workers, snapshots."""
        with self.lock:
            if self.scheduler is None:
                return {"master": self.name, "role": self.role, "state": "starting"}
            status = {
                **self.scheduler.status(), "master": self.name, "role": self.role,
                "replaced_workers": max(0, self.next_worker - self.target_workers),
                "snapshot_seq": self.snapshot_seq, "takeover": self.takeover_at is not None,
                "counters": dict(self.scheduler.counters()),
            }
            if self.error is not None:
                status.update(state="failed", error=str(self.error).splitlines()[0])
            if tasks:
                status["tasks"] = [{"task_id": t.task_id, "state": t.state.value, "attempt": t.attempt,
                                    "running": dict(t.running), "executions": t.executions,
                                    "location": t.location} for t in self.scheduler.table.tasks.values()]
            return status
