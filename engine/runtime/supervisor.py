"""The supervisor: a warm pool of MapReduce workers, shared by the jobs of a cluster,
which outlives them all, and the host of each job's first primary master.

Starting an actor costs a process and its imports (about a second on a small machine),
which would dominate a small job.  The pool keeps workers alive between jobs, so a small
job pays milliseconds.  A worker is leased to one job at a time; workers unused for
``idle_timeout_s`` exit by themselves and give their CPU back to the cluster, so an idle
engine does not hold resources other Ray work needs.

The pool is a ``MasterHost``: a job's primary coordinator runs in this process (as a
Flink JobManager hosts both its resource manager and its job masters), and its standby
in a ``MapReduceMaster`` process, so that no single process holds a job's only master.
The standby's process starts beside the first job, not before it.  Masters get this
pool's handle in their ``MasterConfig``: they never import this module (which creates
them).
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from typing import Any

import ray

from engine.mapreduce.master import MapReduceMaster, MasterHost
from engine.mapreduce.worker import MapReduceWorker
from engine.runtime.control_plane import control_plane_placement, without_dead
from engine.testing.chaos import WorkerChaos

POOL_NAME = "engine-mapreduce-pool"
NAMESPACE = "engine"
WORKER_PREFIX = "engine-worker-"
MASTER_PREFIX = "engine-master-"
ADOPT_TIMEOUT_S = 5.0  # a new pool waits this long for the survivors of an earlier one to answer
DEFAULT_IDLE_TIMEOUT_S = 60.0
# A warm worker may have died while free (or with its node): a lease that fails is given to
# a fresh worker, at most this many times per slot, while the other leases go on.
LEASE_ATTEMPTS = 3
# How long acquire waits for the next lease before returning what it has (the rest join
# the job when their lease runs: capacity that left with a node may never come back).
LEASE_WAIT_S = 30.0
SPARE_DELAY_S = 2.0  # the spare starts this long after the first job has its first workers


@ray.remote(num_cpus=0, max_concurrency=96, max_restarts=0)
class WorkerPool(MasterHost):
    """Leases warm workers to jobs, replaces dead ones, hosts jobs' first primaries and
    hands out master processes for their standbys."""

    def __init__(self, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S) -> None:
        MasterHost.__init__(self)
        self.idle_timeout_s = idle_timeout_s
        self.free: dict[str, tuple[Any, float]] = {}  # name -> (handle, released_at)
        self.leased: dict[str, tuple[Any, str]] = {}  # name -> (handle, job_id)
        self.placement = control_plane_placement()  # masters go where the pool is: the head node
        self.masters: list[Any] = []  # MapReduceMaster processes (not this one)
        self.spare_workers: list[tuple[str, Any]] = []
        self.cpus: dict[str, float] = {}  # worker name -> CPUs it reserves (its task slots; 0: the spare)
        self.lock = threading.Lock()
        # Orders the lease and release calls a worker gets, also across pools: a pool that
        # replaces a dead one starts a later epoch.
        self._epoch = time.time_ns()
        self._counter = itertools.count()
        self._extras_started = False
        self._adopt_survivors()

    def _next_seq(self) -> tuple[int, int]:
        return (self._epoch, next(self._counter))

    def _adopt_survivors(self) -> None:
        """Rebuild what an earlier pool of this cluster knew, if it died: its workers and
        masters are named actors that outlive it; each says in its ping whether it is
        leased, and to which job.  One that does not answer within ``ADOPT_TIMEOUT_S`` is
        stopped (a job using it sees a worker die and replaces it).  A first pool finds none."""
        try:
            names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                     if a.get("namespace") == NAMESPACE and a["name"].startswith((WORKER_PREFIX, MASTER_PREFIX))]
        except Exception:  # an older Ray, or a GCS hiccup: start empty, as a first pool does
            return
        handles = {}
        for name in names:
            try:
                handles[name] = ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                continue
        pings = {handle.ping.remote(): name for name, handle in handles.items()}
        answered, silent = ray.wait(list(pings), num_returns=len(pings), timeout=ADOPT_TIMEOUT_S) if pings else ([], [])
        for ref in silent:  # still starting (or stuck): its state is unknown, so it is not kept
            ray.kill(handles[pings[ref]], no_restart=True)
        now = time.monotonic()
        for ref in answered:
            name = pings[ref]
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError:
                continue
            handle = handles[name]
            if not name.startswith(MASTER_PREFIX):
                self.cpus[name] = float(info.get("cpus", 1.0 if info.get("reserves_cpu", True) else 0.0))
            if name.startswith(MASTER_PREFIX):
                self.masters.append(handle)
            elif info.get("job"):
                self.leased[name] = (handle, info["job"])
            elif not info.get("reserves_cpu", True) and not self.spare_workers:
                self.spare_workers.append((name, handle))
            else:
                self.free[name] = (handle, now)

    def _new_worker(self, cpus: float = 1.0) -> tuple[str, Any]:
        name = f"{WORKER_PREFIX}{uuid.uuid4().hex[:10]}"
        idle_timeout = self.idle_timeout_s if cpus > 0 else float("inf")  # a spare holds no CPU: it may wait
        handle = MapReduceWorker.options(name=name, namespace=NAMESPACE, lifetime="detached", num_cpus=cpus,
                                         scheduling_strategy="SPREAD").remote(name, idle_timeout, cpus)
        self.cpus[name] = cpus
        return name, handle

    def _stop_free_unlike(self, slots: int) -> None:
        """Stop the free workers that do not have ``slots`` task slots: a new worker of that
        size needs the CPUs they reserve (called with the lock held)."""
        for name, (handle, _) in list(self.free.items()):
            if self.cpus.get(name, 1.0) != slots:
                del self.free[name]
                self.cpus.pop(name, None)
                try:
                    ray.kill(handle, no_restart=True)
                except Exception:  # already gone
                    pass

    def _refill_spare(self) -> None:
        """Keep one warm worker that reserves no CPU, ready to replace a dead one at once
        (the dead worker's CPU is free by then, so the cluster is not oversubscribed)."""
        with self.lock:
            if not self.spare_workers:
                self.spare_workers.append(self._new_worker(cpus=0))

    def _new_master(self) -> Any:
        master = MapReduceMaster.options(name=f"{MASTER_PREFIX}{uuid.uuid4().hex[:10]}", namespace=NAMESPACE,
                                         lifetime="detached", **self.placement).remote()
        self.masters.append(master)
        return master

    def acquire(self, job_id: str, count: int, chaos: dict[int, WorkerChaos] | None = None,
                wait_for: int | None = None, new_at_most: int | None = None,
                slots: int = 1) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]]]:
        """Lease ``count`` workers of ``slots`` task slots each (a worker reserves one CPU per
        slot) to ``job_id``, reusing warm ones of that size; with ``new_at_most``, fewer
        when that would mean starting more than that many new processes (free warm workers
        of that size are always leased, up to ``count``; at least one worker is).  Free
        workers of another size are stopped when new ones must start (they hold the CPUs).

        Returns (leased: name -> handle, pending: name -> (handle, lease call)).  Without
        ``wait_for`` every lease is waited for; with it, the call returns as soon as that
        many are leased, so a job's first map starts on the first warm worker while the
        others are still starting: the caller waits on their lease calls (a worker's lease
        has run once its call returns; one that fails died while starting).
        """
        chaos = chaos or {}
        now = time.monotonic()
        chosen: dict[str, Any] = {}
        with self.lock:
            for name, (handle, released) in list(self.free.items()):
                if len(chosen) == count:
                    break
                if self.cpus.get(name, 1.0) != slots:
                    continue
                del self.free[name]
                if now - released > 0.8 * self.idle_timeout_s:  # about to exit by itself
                    self.cpus.pop(name, None)
                    ray.kill(handle, no_restart=True)
                    continue
                chosen[name] = handle
            floor = count if new_at_most is None else min(count, max(1, new_at_most))
            if len(chosen) < floor:
                self._stop_free_unlike(slots)
            # With free workers enough to start on, new ones are started once those are
            # leased: a process booting beside them would slow their start on a small machine.
            later = max(0, floor - len(chosen)) if wait_for is not None and len(chosen) >= wait_for else 0
            while len(chosen) < floor - later:
                name, handle = self._new_worker(slots)
                chosen[name] = handle
            for name, handle in chosen.items():
                self.leased[name] = (handle, job_id)
        slots = [{"name": name, "handle": handle, "chaos": chaos.get(index),
                  "ref": handle.lease.remote(job_id, chaos.get(index), self._next_seq())}
                 for index, (name, handle) in enumerate(chosen.items())]
        waiting = {slot["ref"]: slot for slot in slots}
        leased: dict[str, Any] = {}
        need = len(slots) if wait_for is None else min(wait_for, len(slots))
        while waiting and len(leased) < need:
            done, _ = ray.wait(list(waiting), num_returns=1, timeout=LEASE_WAIT_S)
            if not done:  # no capacity yet (e.g. a node left): the rest join the job later
                break
            slot = waiting.pop(done[0])
            try:
                ray.get(done[0])
                leased[slot["name"]] = slot["handle"]
            except ray.exceptions.RayError:  # died while starting (or while free): a fresh one
                fresh = self._refill_slot(job_id, slot)
                if fresh is not None:
                    waiting[fresh["ref"]] = fresh
        for _ in range(later):
            with self.lock:
                name, handle = self._new_worker(slots)
                self.leased[name] = (handle, job_id)
            slot = {"name": name, "handle": handle, "chaos": None,
                    "ref": handle.lease.remote(job_id, None, self._next_seq())}
            waiting[slot["ref"]] = slot
        self._start_extras()
        return leased, {slot["name"]: (slot["handle"], slot["ref"]) for slot in waiting.values()}

    def _start_extras(self) -> None:
        """Once the first job holds its workers, start the spare worker in the background,
        ``SPARE_DELAY_S`` later: it replaces a dead worker at once, and it comes up beside
        the job instead of competing with its start."""
        with self.lock:
            if self._extras_started:
                return
            self._extras_started = True
        threading.Thread(target=self._refill_spare_later, name="pool-spare", daemon=True).start()

    def _refill_spare_later(self) -> None:
        # Not while the first job's own processes start: on a small machine a process
        # starting beside them takes CPU from their start (a replacement meanwhile is a
        # fresh worker, as when there is no spare).
        time.sleep(SPARE_DELAY_S)
        self._refill_spare()

    def _refill_slot(self, job_id: str, slot: dict) -> dict | None:
        """Put a fresh worker in the slot of one whose lease failed, without waiting for it
        (the other slots' leases go on meanwhile); None once the slot has failed
        ``LEASE_ATTEMPTS`` times (the job replaces the worker later, as any lost one)."""
        with self.lock:
            self.leased.pop(slot["name"], None)
            cpus = self.cpus.pop(slot["name"], 1.0)
            if slot.get("failures", 0) + 1 >= LEASE_ATTEMPTS:
                return None
            name, handle = self._new_worker(cpus)
            self.leased[name] = (handle, job_id)
        return {**slot, "name": name, "handle": handle, "failures": slot.get("failures", 0) + 1,
                "ref": handle.lease.remote(job_id, slot["chaos"], self._next_seq())}

    def prewarm(self, count: int, slots: int = 1) -> int:
        """Start workers of ``slots`` task slots until the pool's workers (free or leased)
        reserve ``count`` CPUs, so jobs do not wait for them: the first now, the others
        ``SPARE_DELAY_S`` later (on a small machine, processes starting beside a first
        job's slow it down; that job starts new workers itself if it needs them sooner).  The warm spare that replaces a failed
        worker starts beside the first job.  Workers beyond the cluster's CPUs would never
        start, and a job leased one of them would wait for it.  Returns how many are free."""
        self._top_up_workers(min(count, slots), slots)
        if count > slots:
            def later() -> None:
                time.sleep(SPARE_DELAY_S)
                self._top_up_workers(count, slots)

            threading.Thread(target=later, name="pool-prewarm", daemon=True).start()
        return len(self.free)

    def _top_up_workers(self, count: int, slots: int) -> None:
        with self.lock:
            while (reserved := sum(self.cpus.get(name, 1.0) for name in [*self.free, *self.leased])) < count:
                name, handle = self._new_worker(min(slots, count - reserved))
                self.free[name] = (handle, time.monotonic())

    def replace(self, job_id: str, dead: str, chaos: WorkerChaos | None = None, slots: int = 1) -> tuple[str, Any]:
        """Forget a dead worker of ``job_id`` and lease a fresh one in its place (the warm
        spare, which reserves no CPU: the dead worker's are free; else a new worker of
        ``slots`` slots)."""
        with self.lock:
            self.leased.pop(dead, None)
            self.free.pop(dead, None)
            self.cpus.pop(dead, None)
            name, handle = self.spare_workers.pop() if self.spare_workers else self._new_worker(slots)
            self.leased[name] = (handle, job_id)
        handle.lease.remote(job_id, chaos, self._next_seq())
        threading.Thread(target=self._refill_spare, daemon=True).start()
        return name, handle

    def release(self, job_id: str) -> int:
        """Return ``job_id``'s workers to the pool, dropping the job's map outputs."""
        now = time.monotonic()
        released = 0
        with self.lock:
            for name, (handle, owner) in list(self.leased.items()):
                if owner == job_id:
                    del self.leased[name]
                    handle.release.remote(job_id, self._next_seq())
                    self.free[name] = (handle, now)
                    released += 1
        return released

    def stop_idle(self, job_id: str | None = None) -> int:
        """Give the CPUs of idle workers back to the cluster now, for Ray work that is not
        the engine's (Ray Data tasks): return ``job_id``'s workers first if its own release
        has not arrived yet, then stop every free worker (the next job starts fresh ones).
        Returns how many were stopped."""
        if job_id is not None:
            self.release(job_id)
        with self.lock:
            idle = [handle for handle, _ in self.free.values()]
            for name in self.free:
                self.cpus.pop(name, None)
            self.free.clear()
        for handle in idle:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:  # already gone
                pass
        return len(idle)

    def take_masters(self, count: int, exclude: list[Any] | None = None) -> list[Any]:
        """``count`` live masters, not those in ``exclude``: this process first (a job's
        primary runs here), then ``MapReduceMaster`` processes, started if too few are
        alive.  One still starting counts as alive: a call to it waits until it is up."""
        exclude = exclude or []
        me = ray.get_runtime_context().current_actor
        chosen = [] if any(me == excluded for excluded in exclude) else [me]
        with self.lock:
            self.masters = without_dead(self.masters)
            others = [m for m in self.masters if all(m != excluded for excluded in exclude)]
            while len(chosen) + len(others) < count:
                others.append(self._new_master())
        return (chosen + others)[:count]

    def members(self) -> dict:
        """What this pool holds: free and spare worker names, leased workers with their
        job, and how many master processes besides this one."""
        with self.lock:
            return {"free": sorted(self.free), "spares": [name for name, _ in self.spare_workers],
                    "leased": {name: job for name, (_, job) in self.leased.items()}, "masters": len(self.masters)}

    def shutdown(self) -> None:
        """Kill every pooled worker and master process (this one is killed by its caller)."""
        with self.lock:
            handles = [h for h, _ in self.free.values()] + [h for h, _ in self.leased.values()] + self.masters
            handles += [h for _, h in self.spare_workers]
            self.spare_workers.clear()
            self.free.clear()
            self.leased.clear()
            self.masters.clear()
        for handle in handles:
            try:
                ray.kill(handle, no_restart=True)
            except Exception:
                pass


def get_pool() -> Any:
    """The cluster's worker pool, created on first use (a detached named actor)."""
    try:
        pool = ray.get_actor(POOL_NAME, namespace=NAMESPACE)
        ray.get(pool.__ray_ready__.remote(), timeout=30)
        return pool
    except (ValueError, ray.exceptions.RayActorError):
        pass
    try:
        return WorkerPool.options(name=POOL_NAME, namespace=NAMESPACE, lifetime="detached",
                                  get_if_exists=True, **control_plane_placement()).remote()
    except ValueError:
        return ray.get_actor(POOL_NAME, namespace=NAMESPACE)


def shutdown_pool() -> None:
    """Stop the pool and its actors (used by ``engine.shutdown`` and benchmarks)."""
    try:
        pool = ray.get_actor(POOL_NAME, namespace=NAMESPACE)
    except ValueError:
        return
    try:
        ray.get(pool.shutdown.remote(), timeout=30)
    finally:
        ray.kill(pool, no_restart=True)


def stop_idle_workers(job_id: str | None = None) -> int:
    """Stop the pool's idle workers (``WorkerPool.stop_idle``) so that Ray Data tasks find
    free CPUs instead of waiting a minute for them to exit; 0 when no pool runs."""
    try:
        pool = ray.get_actor(POOL_NAME, namespace=NAMESPACE)
    except ValueError:
        return 0
    return int(ray.get(pool.stop_idle.remote(job_id), timeout=60))
