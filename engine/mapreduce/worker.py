"""The MapReduce worker actor: a thin Ray shell around ``WorkerState``.

The state (map outputs, running attempts, finished reports) and the task functions are
the ones local mode uses; this shell adds what only a process of its own needs: reduces
fetch their inputs from other workers over Ray, pings are answered while a task runs
(the actor is threaded; pyarrow and numpy release the GIL for the heavy work), fault
injection, and exiting after a while unused.  Map outputs are owned by this process,
not by the master, so a master failure loses none of them and a worker failure loses
exactly this worker's.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pyarrow as pa
import ray

from engine.common.wire import decode_table, encode_table
from engine.io.splits import InputSplit
from engine.kernels import readiness
from engine.mapreduce.actions import AttemptReport, MapKey
from engine.mapreduce.spec import MapReduceJob
from engine.mapreduce.worker_state import MapOutputLostError, WorkerAttempts, WorkerState
from engine.testing.chaos import WorkerChaos


IDLE_LOAD_AFTER_S = 2.0


@ray.remote(max_concurrency=8, max_restarts=0)
class MapReduceWorker:
    """A pooled worker process, leased to one job at a time.  See the module docstring."""

    def __init__(self, name: str, idle_timeout_s: float = 60.0, cpus: float = 1.0) -> None:
        self.name = name
        self.cpus = cpus  # CPUs reserved: the task slots a job gives this worker
        self.reserves_cpu = cpus > 0  # False for the pool's spare (it holds no CPU while it waits)
        self._state = WorkerState(name)
        self._last_contact = time.monotonic()
        self._tasks_done = 0
        self._chaos = WorkerChaos()
        self._job: str | None = None
        self._lease_lock = threading.Lock()
        # This actor runs calls on several threads, so a lease and a release sent one after the
        # other can run in either order: each carries the pool's sequence number, and a call
        # older than the newest one seen does not change the lease.
        self._lease_seq: tuple[int, int] = (-1, -1)
        import pyarrow.compute  # noqa: F401  (every task needs them: load before the first)
        import pyarrow.parquet  # noqa: F401

        # The compiled kernels (about 140 MiB of LLVM and code, a second to load) are loaded
        # when a task's input needs them, or in the background once this worker is idle
        # between jobs; until then tasks on small inputs run their exact references
        # (``engine.kernels.readiness``), so a small job never waits for them.  The pool's
        # spare holds no CPU while it waits, so it loads them only for its tasks.
        threading.Thread(target=self._watch_idle, args=(idle_timeout_s,), daemon=True).start()
        if self.reserves_cpu:
            threading.Thread(target=self._load_kernels_when_idle, name="kernel-idle-load", daemon=True).start()

    def _watch_idle(self, timeout_s: float) -> None:
        """Exit when nobody has used this worker for ``timeout_s``: give the CPU back."""
        while timeout_s != float("inf"):
            time.sleep(min(5.0, timeout_s / 4))
            if time.monotonic() - self._last_contact > timeout_s and not self._state.running_any():
                os._exit(0)

    def _load_kernels_when_idle(self) -> None:
        """Start loading the compiled kernels once no call has come for ``IDLE_LOAD_AFTER_S``
        and no task runs (no job waits for the load, nor shares the CPU with it)."""
        while not readiness.loaded():
            time.sleep(0.5)
            if time.monotonic() - self._last_contact >= IDLE_LOAD_AFTER_S and not self._state.running_any():
                readiness.load_in_background()
                return

    def lease(self, job_id: str, chaos: WorkerChaos | None, seq: tuple[int, int]) -> str:
        """Start serving ``job_id`` with fresh fault-injection settings, unless a newer lease or
        release (higher ``seq``) came first; returns the name."""
        self._last_contact = time.monotonic()
        with self._lease_lock:
            if seq < self._lease_seq:
                return self.name
            self._lease_seq = seq
            self._job = job_id
            self._chaos = chaos or WorkerChaos()
            self._tasks_done = 0
        return self.name

    def release(self, job_id: str, seq: tuple[int, int]) -> None:
        """Forget ``job_id``'s map outputs and stop serving it (unless a newer lease came first)."""
        self._last_contact = time.monotonic()
        self._state.release(job_id)
        with self._lease_lock:
            if seq < self._lease_seq:
                return
            self._lease_seq = seq
            if self._job == job_id:
                self._job = None
                self._chaos = WorkerChaos()

    def ping(self) -> dict:
        """Liveness: name, job leased to (or None), whether it reserves CPUs and how many,
        attempts running, map outputs held, process and node."""
        self._last_contact = time.monotonic()
        running, outputs = self._state.counts()
        return {"worker": self.name, "job": self._job, "reserves_cpu": self.reserves_cpu, "cpus": self.cpus,
                "running": running, "outputs": outputs, "pid": os.getpid(),
                "node": ray.get_runtime_context().get_node_id()}

    def _after_task(self, kind: str, elapsed: float) -> None:
        self._tasks_done += 1
        self._chaos.after_task(kind, self._tasks_done, elapsed)

    def run_map(self, job: MapReduceJob, job_id: str, task_id: str, attempt: int, split: InputSplit,
                reducers: int) -> AttemptReport:
        """Run one map attempt, keep its partitions here, and report."""
        self._last_contact = time.monotonic()
        self._chaos.before_task("map", self._tasks_done)
        report = self._state.run_map(job, job_id, task_id, attempt, split, reducers)
        self._after_task("map", report.elapsed_s)
        return report

    def fetch(self, job_id: str, keys: list[MapKey], partition: int) -> pa.Buffer:
        """Partition ``partition`` of the named map outputs, concatenated, as an Arrow IPC
        stream (``engine.common.wire``: Ray's own table serializer imports pandas)."""
        self._last_contact = time.monotonic()
        return encode_table(self._state.fetch(job_id, keys, partition))

    def drop(self, job_id: str, keys: list[MapKey]) -> None:
        """Forget map outputs nobody needs any more."""
        self._state.drop(job_id, keys)

    def run_reduce(self, job: MapReduceJob, job_id: str, task_id: str, attempt: int, partition: int,
                   sources: dict[str, tuple[Any, list[MapKey]]], output_dir: str) -> AttemptReport | None:
        """Fetch a partition from every map output, reduce it and commit its part.

        Raises ``MapOutputLostError`` naming the map outputs it could not fetch; returns
        None when that happens after the job let this worker go (a losing backup attempt).
        """
        self._last_contact = time.monotonic()
        self._chaos.before_task("reduce", self._tasks_done)
        started = time.perf_counter()
        names = list(sources)
        # Outputs held here are read directly: a call to this actor's own handle would cost
        # a Ray round trip (the first one a connection too).
        refs = [None if name == self.name else sources[name][0].fetch.remote(job_id, sources[name][1], partition)
                for name in names]
        tables, lost, unreachable = [], [], []
        for name, ref in zip(names, refs):
            try:
                tables.append(self._state.fetch(job_id, sources[name][1], partition) if ref is None
                              else decode_table(ray.get(ref)))
            except (MapOutputLostError, ray.exceptions.RayError) as error:
                cause = error if isinstance(error, MapOutputLostError) else getattr(error, "cause", None)
                lost += cause.lost if isinstance(cause, MapOutputLostError) else [tuple(k) for k in sources[name][1]]
                unreachable.append(name)
        if lost and self._job != job_id:
            return None
        if lost:
            raise MapOutputLostError(f"map outputs lost on {unreachable}: {sorted(lost)}", lost, unreachable)
        report = self._state.run_reduce(job, job_id, task_id, attempt, partition, tables, output_dir,
                                        fetch_s=time.perf_counter() - started)
        self._after_task("reduce", report.elapsed_s)
        return report

    def attempts(self, job_id: str) -> WorkerAttempts:
        """For a master taking over: this job's attempts here and the map outputs held."""
        self._last_contact = time.monotonic()
        return self._state.attempts(job_id)
