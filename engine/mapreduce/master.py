"""The MapReduce master actor: hosts jobs' coordinators as primary or standby.

One primary master runs a job; a standby master in another process pings it and, when
it dies, takes over from the newest snapshot.  A job's first primary runs in the
supervisor's process (which is a ``MasterHost`` too), its standby in a
``MapReduceMaster``.  Workers and masters
are detached actors created by the supervisor (``engine.runtime.supervisor``), which
outlives them, so no master failure takes the workers (and the map outputs they hold)
down with it.  The supervisor's handle reaches a master inside its ``MasterConfig``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import ray

from engine.errors import JobFailedError
from engine.mapreduce.config import MasterConfig
from engine.mapreduce.coordinator import JobCoordinator
from engine.mapreduce.heartbeat import HeartbeatMonitor
from engine.mapreduce.spec import MapReduceJob


def _watch(coordinator: JobCoordinator, primary: ray.actor.ActorHandle) -> bool:
    """Ping the primary until it dies (True: take over) or finishes the job (False).

    Only a primary that Ray reports dead, or that stays unanswered for two heartbeat
    timeouts, is taken over (a ping failing for another reason, e.g. the actor being
    unavailable for a moment, is a missed ping); an unanswered one is killed first, so
    that two primaries never run one job.
    """
    options = coordinator.options
    monitor = HeartbeatMonitor(options.heartbeat_interval_s, 2 * options.heartbeat_timeout_s)
    monitor.add("primary")
    pending = None
    while not coordinator.done.is_set():
        if pending is None and monitor.due():
            pending = primary.ping.remote(coordinator.config.job_id)
        if pending is None:
            coordinator.done.wait(options.heartbeat_interval_s / 2)
            continue
        ready, _ = ray.wait([pending], timeout=options.heartbeat_interval_s)
        if ready:
            try:
                state = ray.get(pending)
            except ray.exceptions.ActorDiedError:
                return True
            except ray.exceptions.RayError as error:  # e.g. unavailable for a moment: a missed ping
                pending = None
                coordinator.events.append(f"ping of the primary failed: {type(error).__name__}")
                continue
            pending = None
            monitor.answered("primary")
            if state.get("done"):
                return False
        elif monitor.overdue():
            ray.kill(primary, no_restart=True)
            return True
    return False


def _start_standby(coordinator: JobCoordinator) -> None:
    """After a takeover, a new standby watches this master in turn."""
    try:
        standby = coordinator._call_pool("take_masters", 1, [coordinator.host])[0]
        standby.standby.remote(coordinator.job, coordinator.config, coordinator.number + 1, [coordinator.host])
        coordinator.standbys = [standby]
    except ray.exceptions.RayError as error:
        coordinator.events.append(f"could not start a new standby: {error}")


def _take_over(coordinator: JobCoordinator) -> None:
    """Become the primary from the newest snapshot (from the start if there is none)."""
    snapshot = coordinator.store.latest()
    if snapshot is None:
        coordinator.events.append("takeover without snapshot: starting the job from the beginning")
    else:
        coordinator.snapshot_seq = snapshot.seq
        coordinator.events.append(f"took over from snapshot {snapshot.seq}")
    threading.Thread(target=_start_standby, args=(coordinator,), daemon=True).start()
    coordinator.run(snapshot.state if snapshot is not None else None, takeover=True)


_FORGOTTEN_KEPT = 10_000


class MasterHost:
    """Hosts the coordinators of one or more jobs, as primary or standby, in an actor.

    The methods below are the master's Ray interface.  ``MapReduceMaster`` is a process
    that only does this; the supervisor (``engine.runtime.supervisor.WorkerPool``) is one
    too, so that a job's primary needs no process of its own.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, JobCoordinator] = {}
        self.jobs_lock = threading.Lock()
        # Jobs forgotten here, newest last: a start that arrives after its job's cancel
        # (calls to a threaded actor may run out of order) must not run it.
        self.forgotten: OrderedDict[str, None] = OrderedDict()

    def _coordinator(self, job: MapReduceJob, config: MasterConfig, number: int) -> JobCoordinator:
        coordinator = JobCoordinator(ray.get_runtime_context().current_actor, job, config, number)
        with self.jobs_lock:
            if config.job_id in self.forgotten:
                coordinator.cancelled = True
                coordinator.error = JobFailedError(f"job {config.job_id} was cancelled")
                coordinator.done.set()
                coordinator.ended.set()
            else:
                self.jobs[config.job_id] = coordinator
        return coordinator

    def start_primary(self, job: MapReduceJob, config: MasterConfig, number: int, state: dict | None) -> dict | None:
        """Run ``job`` as its primary, from the start or from a snapshot's ``state``
        (``resume``); returns the summary or raises the job's ``JobFailedError``."""
        coordinator = self._coordinator(job, config, number)
        if not coordinator.cancelled:
            coordinator.run(state)
        return coordinator.wait_done()

    def standby(self, job: MapReduceJob, config: MasterConfig, number: int, primaries: list) -> dict | None:
        """Stand by for ``job`` (``primaries[0]`` is the primary, in a list so Ray passes
        the handle as is); returns the summary if this master took over, else None."""
        coordinator = self._coordinator(job, config, number)
        if not _watch(coordinator, primaries[0]):
            coordinator.done.set()
            return None
        _take_over(coordinator)
        return coordinator.wait_done(0)

    def take_over(self, job: MapReduceJob, config: MasterConfig, number: int) -> dict | None:
        """Continue ``job`` from its newest snapshot now (every earlier master is gone)."""
        coordinator = self._coordinator(job, config, number)
        _take_over(coordinator)
        return coordinator.wait_done(0)

    def ping(self, job_id: str | None = None) -> dict:
        """Liveness of this master, and of one job's coordinator here."""
        coordinator = self.jobs.get(job_id) if job_id else None
        if coordinator is None:
            return {"master": "idle", "role": "none", "done": False}
        return {"master": coordinator.name, "role": coordinator.role, "done": coordinator.done.is_set()}

    def status(self, job_id: str, tasks: bool = False) -> dict:
        """The job's status as seen by its coordinator here."""
        coordinator = self.jobs.get(job_id)
        return coordinator.status(tasks) if coordinator else {"role": "none", "state": "unknown"}

    def wait_done(self, job_id: str, timeout_s: float | None = None) -> dict | None:
        """Block until the job ends here (see ``JobCoordinator.wait_done``)."""
        coordinator = self.jobs.get(job_id)
        return coordinator.wait_done(timeout_s) if coordinator else None

    def peers(self, job_id: str) -> list:
        """Masters the job's coordinator here started (a new standby after a takeover)."""
        coordinator = self.jobs.get(job_id)
        return list(coordinator.standbys) if coordinator else []

    def forget(self, job_id: str, wait_s: float = 10.0) -> None:
        """Drop a finished (or cancelled) job's coordinator; a primary still running is
        stopped, and the call returns once it has given its workers back (at most
        ``wait_s``)."""
        with self.jobs_lock:
            coordinator = self.jobs.pop(job_id, None)
            self.forgotten[job_id] = None
            while len(self.forgotten) > _FORGOTTEN_KEPT:
                self.forgotten.popitem(last=False)
        if coordinator is not None:
            coordinator.cancelled = True
            running = coordinator.role == "primary"
            coordinator.done.set()
            if running:
                coordinator.ended.wait(wait_s)


@ray.remote(num_cpus=0, max_concurrency=64, max_restarts=0)
class MapReduceMaster(MasterHost):
    """A long-lived master process hosting the coordinators of jobs (see ``MasterHost``):
    the standby of jobs whose primary runs in the supervisor, or the primary after a
    takeover."""
