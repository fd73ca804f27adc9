"""The MapReduce worker actor: runs map and reduce tasks and serves map outputs.

Map outputs stay in the worker that produced them (as in the paper, where they sit on
the map worker's local disk): they are owned by this process, not by the master, so a
master failure loses none of them and a worker failure loses exactly this worker's.
The actor is threaded so that pings and reducers' fetches are answered while a task
runs (pyarrow and numpy release the GIL for the heavy work).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pyarrow as pa
import ray

from engine.common.tables import concat
from engine.io.splits import InputSplit
from engine.testing.chaos import WorkerChaos
from engine.mapreduce.spec import MapReduceJob
from engine.mapreduce.tasks import run_map_task, run_reduce_task


class MapOutputLostError(RuntimeError):
    """A reduce task could not fetch some map outputs; ``lost`` names the map tasks."""

    def __init__(self, message: str, lost: list[str], workers: list[str]) -> None:
        super().__init__(message)
        self.lost = lost
        self.workers = workers

    def __reduce__(self):  # keep the fields when Ray ships the error to the master
        return (MapOutputLostError, (str(self), self.lost, self.workers))


@ray.remote(max_concurrency=8, max_restarts=0)
class MapReduceWorker:
    """A worker process of one job.  See the module docstring."""

    def __init__(self, name: str, idle_timeout_s: float = 60.0) -> None:
        self.name = name
        self._outputs: dict[tuple[str, str, int], list[pa.Table]] = {}
        self._lock = threading.Lock()
        self._last_contact = time.monotonic()
        self._tasks_done = 0
        self._chaos = WorkerChaos()
        self._job: str | None = None
        self._running: set[str] = set()
        self._reports: dict[tuple[str, str, int], dict[str, Any]] = {}  # for a master that takes over
        self._warm_up()
        threading.Thread(target=self._watch_idle, args=(idle_timeout_s,), daemon=True).start()

    @staticmethod
    def _warm_up() -> None:
        """Pay the one-time costs (imports, lookup tables) before the first task arrives."""
        import pyarrow.compute  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        from engine.kernels import warm_up

        warm_up()

    def _watch_idle(self, timeout_s: float) -> None:
        """Exit when nobody has used this worker for ``timeout_s``: give the CPU back."""
        while timeout_s != float("inf"):
            time.sleep(min(5.0, timeout_s / 4))
            if time.monotonic() - self._last_contact > timeout_s and not self._running:
                os._exit(0)

    def lease(self, job_id: str, chaos: WorkerChaos | None) -> str:
        """Start serving ``job_id`` with fresh fault-injection settings; returns the name."""
        self._last_contact = time.monotonic()
        self._job = job_id
        self._chaos = chaos or WorkerChaos()
        self._tasks_done = 0
        return self.name

    def release(self, job_id: str) -> None:
        """Stop serving ``job_id`` and forget its map outputs."""
        self._last_contact = time.monotonic()
        with self._lock:
            for key in [k for k in self._outputs if k[0] == job_id]:
                del self._outputs[key]
            for key in [k for k in self._reports if k[0] == job_id]:
                del self._reports[key]
        if self._job == job_id:
            self._job = None
            self._chaos = WorkerChaos()

    def ping(self) -> dict:
        """Liveness: name, running tasks and number of stored map outputs."""
        self._last_contact = time.monotonic()
        with self._lock:
            return {"worker": self.name, "running": sorted(self._running), "outputs": len(self._outputs),
                    "pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    def _before_task(self, kind: str) -> None:
        self._last_contact = time.monotonic()
        self._chaos.before_task(kind, self._tasks_done)

    def _after_task(self, kind: str, elapsed: float) -> None:
        self._tasks_done += 1
        self._chaos.after_task(kind, self._tasks_done, elapsed)

    def run_map(self, job: MapReduceJob, job_id: str, task_id: str, attempt: int, split: dict,
                reducers: int) -> dict[str, Any]:
        """Run one map attempt, keep its partitions here, and report sizes and counters."""
        self._before_task("map")
        started = time.perf_counter()
        with self._lock:
            self._running.add(f"{job_id}/{task_id}#{attempt}")
        try:
            result = run_map_task(job, InputSplit.from_json(split), reducers)
            with self._lock:
                self._outputs[(job_id, task_id, attempt)] = result.partitions
        finally:
            with self._lock:
                self._running.discard(f"{job_id}/{task_id}#{attempt}")
        elapsed = time.perf_counter() - started
        report = {
            "task_id": task_id, "attempt": attempt, "worker": self.name, "elapsed_s": elapsed,
            "counters": dict(result.counters), "dead_letters": result.dead_letters,
            "partition_rows": [t.num_rows for t in result.partitions],
            "input_bytes": result.input_bytes,
        }
        with self._lock:
            self._reports[(job_id, task_id, attempt)] = report
        self._after_task("map", elapsed)
        return report

    def fetch(self, job_id: str, keys: list[tuple[str, int]], partition: int) -> pa.Table:
        """Partition ``partition`` of the named map outputs, concatenated."""
        self._last_contact = time.monotonic()
        with self._lock:
            missing = [f"{t}#{a}" for t, a in keys if (job_id, t, a) not in self._outputs]
            if missing:
                raise MapOutputLostError(f"worker {self.name} does not hold map outputs {missing}",
                                         [m.split("#")[0] for m in missing], [self.name])
            tables = [self._outputs[(job_id, t, a)][partition] for t, a in keys]
        return concat(tables)

    def holds(self, job_id: str, keys: list[tuple[str, int]]) -> list[bool]:
        """Which of the named map outputs this worker still holds."""
        self._last_contact = time.monotonic()
        with self._lock:
            return [(job_id, t, a) in self._outputs for t, a in keys]

    def drop(self, job_id: str, keys: list[tuple[str, int]]) -> None:
        """Forget map outputs nobody needs any more (lost backup attempts)."""
        with self._lock:
            for task_id, attempt in keys:
                self._outputs.pop((job_id, task_id, attempt), None)

    def run_reduce(self, job: MapReduceJob, job_id: str, task_id: str, attempt: int, partition: int,
                   sources: dict[str, tuple[Any, list[tuple[str, int]]]], output_dir: str) -> dict[str, Any]:
        """Fetch a partition from every map output, reduce it and commit its part."""
        self._before_task("reduce")
        started = time.perf_counter()
        names = list(sources)
        refs = [sources[n][0].fetch.remote(job_id, sources[n][1], partition) for n in names]
        tables = []
        lost: list[str] = []
        dead_workers: list[str] = []
        for name, ref in zip(names, refs):
            try:
                tables.append(ray.get(ref))
            except MapOutputLostError as error:
                lost.extend(error.lost)
                dead_workers.append(name)
            except ray.exceptions.RayError as error:
                cause = getattr(error, "cause", None)
                if isinstance(cause, MapOutputLostError):
                    lost.extend(cause.lost)
                else:
                    lost.extend(t for t, _ in sources[name][1])
                dead_workers.append(name)
        if lost and self._job != job_id:  # the job ended (a losing backup attempt): nothing to report
            return {"task_id": task_id, "attempt": attempt, "worker": self.name, "stale": True}
        if lost:
            raise MapOutputLostError(f"map outputs lost on {dead_workers}: {sorted(lost)}", sorted(lost), dead_workers)
        fetched = time.perf_counter()
        with self._lock:
            self._running.add(f"{job_id}/{task_id}#{attempt}")
        try:
            result = run_reduce_task(job, partition, tables, output_dir)
        finally:
            with self._lock:
                self._running.discard(f"{job_id}/{task_id}#{attempt}")
        elapsed = time.perf_counter() - started
        report = {"task_id": task_id, "attempt": attempt, "worker": self.name, "elapsed_s": elapsed,
                  "fetch_s": fetched - started, "counters": dict(result.counters), "path": result.path,
                  "rows": result.rows, "dead_letters": result.dead_letters}
        with self._lock:
            self._reports[(job_id, task_id, attempt)] = report
        self._after_task("reduce", elapsed)
        return report

    def attempts(self, job_id: str) -> dict[str, Any]:
        """For a master taking over: this job's attempts running here and finished reports."""
        self._last_contact = time.monotonic()
        prefix = f"{job_id}/"
        with self._lock:
            running = [(r[len(prefix):].split("#")[0], int(r.split("#")[1])) for r in self._running
                       if r.startswith(prefix)]
            done = [report for (job, _, _), report in self._reports.items() if job == job_id]
        return {"running": running, "done": done}
