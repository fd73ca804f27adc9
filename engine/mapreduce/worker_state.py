"""What one worker holds and runs, shared by the Ray worker actor and the inline worker.

Map outputs stay with the worker that produced them (as in the paper, where they sit on
the map worker's local disk): one table per reduce partition, keyed by job, task and
attempt.  A worker also remembers which attempts it is running and the reports of those
it finished, so that a master taking over can adopt them instead of running them again.
No Ray here: the actor (``engine.mapreduce.worker``) adds remote fetching, pings and
fault injection around it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pyarrow as pa

from engine.common.tables import concat
from engine.io.splits import InputSplit
from engine.mapreduce.actions import AttemptReport, MapKey
from engine.mapreduce.spec import MapReduceJob
from engine.mapreduce.tasks import run_map_task, run_reduce_task
from engine.runtime.priority import call_at_lower_priority


class MapOutputLostError(RuntimeError):
    """A reduce could not fetch some map outputs: ``lost`` names them as (map task,
    attempt), ``workers`` names the workers that should have served them."""

    def __init__(self, message: str, lost: list[MapKey], workers: list[str]) -> None:
        super().__init__(message)
        self.lost = [(str(t), int(a)) for t, a in lost]
        self.workers = list(workers)

    def __reduce__(self) -> tuple:  # keep the fields when Ray ships the error to the master
        return (MapOutputLostError, (str(self), self.lost, self.workers))


@dataclass
class WorkerAttempts:
    """A worker's view of one job: attempts running, reports of finished ones, and the
    map outputs it holds."""

    running: list[MapKey]
    finished: list[AttemptReport]
    held: list[MapKey]


class WorkerState:
    """The map outputs, running attempts and finished reports of one worker (thread-safe)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._outputs: dict[tuple[str, str, int], list[pa.Table]] = {}
        self._running: set[tuple[str, str, int]] = set()
        self._reports: dict[tuple[str, str, int], AttemptReport] = {}
        self._lock = threading.Lock()

    def _start(self, key: tuple[str, str, int]) -> None:
        with self._lock:
            self._running.add(key)

    def _end(self, key: tuple[str, str, int], report: AttemptReport | None,
             partitions: list[pa.Table] | None = None) -> None:
        with self._lock:
            self._running.discard(key)
            if report is not None:
                self._reports[key] = report
            if partitions is not None:
                self._outputs[key] = partitions

    def run_map(self, job: MapReduceJob, job_id: str, task_id: str, attempt: int, split: InputSplit,
                reducers: int) -> AttemptReport:
        """Run one map attempt and keep its partitions here; returns its report."""
        key = (job_id, task_id, attempt)
        self._start(key)
        started = time.perf_counter()
        try:
            result = call_at_lower_priority(job.options.nice, run_map_task, job, split, reducers)
        except BaseException:
            self._end(key, None)
            raise
        report = AttemptReport(task_id, attempt, self.name, "map", time.perf_counter() - started,
                               dict(result.counters), result.dead_letters, input_bytes=result.input_bytes,
                               rows=sum(t.num_rows for t in result.partitions))
        self._end(key, report, result.partitions)
        return report

    def run_reduce(self, job: MapReduceJob, job_id: str, task_id: str, attempt: int, partition: int,
                   tables: list[pa.Table], output_dir: str, fetch_s: float = 0.0) -> AttemptReport:
        """Reduce a partition's fetched map outputs and commit its part; returns its report."""
        key = (job_id, task_id, attempt)
        self._start(key)
        started = time.perf_counter()
        try:
            result = call_at_lower_priority(job.options.nice, run_reduce_task, job, partition, tables, output_dir)
        except BaseException:
            self._end(key, None)
            raise
        report = AttemptReport(task_id, attempt, self.name, "reduce", fetch_s + time.perf_counter() - started,
                               dict(result.counters), result.dead_letters, path=result.path, rows=result.rows,
                               schema=result.schema)
        self._end(key, report)
        return report

    def fetch(self, job_id: str, keys: list[MapKey], partition: int) -> pa.Table:
        """Partition ``partition`` of the named map outputs, concatenated; raises
        ``MapOutputLostError`` naming the outputs this worker does not hold."""
        with self._lock:
            missing = [(t, int(a)) for t, a in keys if (job_id, t, int(a)) not in self._outputs]
            if missing:
                raise MapOutputLostError(f"worker {self.name} does not hold map outputs {missing}", missing,
                                         [self.name])
            tables = [self._outputs[(job_id, t, int(a))][partition] for t, a in keys]
        return concat(tables)

    def drop(self, job_id: str, keys: list[MapKey]) -> None:
        """Forget map outputs nobody needs any more."""
        with self._lock:
            for task_id, attempt in keys:
                self._outputs.pop((job_id, task_id, int(attempt)), None)

    def release(self, job_id: str) -> None:
        """Forget everything of ``job_id``."""
        with self._lock:
            for store in (self._outputs, self._reports):
                for key in [k for k in store if k[0] == job_id]:
                    del store[key]

    def attempts(self, job_id: str) -> WorkerAttempts:
        """This worker's attempts and map outputs of ``job_id`` (for a master taking over)."""
        with self._lock:
            return WorkerAttempts(running=sorted((t, a) for j, t, a in self._running if j == job_id),
                                  finished=[r for (j, _, _), r in self._reports.items() if j == job_id],
                                  held=sorted((t, a) for j, t, a in self._outputs if j == job_id))

    def counts(self) -> tuple[int, int]:
        """(attempts running, map outputs held), over every job."""
        with self._lock:
            return len(self._running), len(self._outputs)

    def running_any(self) -> bool:
        """True while some attempt runs here."""
        with self._lock:
            return bool(self._running)
