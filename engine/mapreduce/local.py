"""Local mode (paper §4.7): the same job, in this process, without Ray.

The scheduler the Ray master uses (``engine.mapreduce.scheduler``) drives one in-process
worker (``WorkerState``, the same one inside every Ray worker actor), which runs each
task synchronously with the very task functions the Ray workers run.  So task choice,
retries, counters, the bad-record limit and the commit rules are those of the
distributed run: local mode is the oracle it is tested against, and a debugging aid.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from typing import Any

from engine.common.bad_records import describe_error
from engine.errors import JobFailedError, ResultTimeoutError
from engine.io.parts import prepare_directory
from engine.mapreduce.actions import Action, Commit, DropOutput, Fail, Finish, Launch
from engine.mapreduce.result import JobResult
from engine.mapreduce.rules import commit_dead_letters, commit_job, default_reducers, resolve_output
from engine.mapreduce.progress import progress_of
from engine.mapreduce.scheduler import Scheduler, SchedulerConfig
from engine.mapreduce.spec import MapReduceJob
from engine.mapreduce.task_table import TaskTable
from engine.mapreduce.worker_state import MapOutputLostError, WorkerState
from engine.runtime.handle import CANCELLED, FAILED, RUNNING, SUCCEEDED, Handle

INLINE_WORKER = "inline"


class InlineRun:
    """One job in local mode: the scheduler and one in-process worker.

    ``run()`` performs the scheduler's actions in order until the job finishes (returns
    its ``JobResult``) or fails (raises its ``JobFailedError``); ``cancel()`` stops it
    before the next task.
    """

    def __init__(self, job: MapReduceJob, workers_hint: int | None = None) -> None:
        self.job = job
        self.started = time.perf_counter()
        splits = job.source.plan_splits()
        self.reducers = job.reducers or default_reducers(workers_hint or job.options.workers or os.cpu_count() or 1,
                                                          splits)
        self.output = resolve_output(job)
        prepare_directory(self.output, job.options.overwrite)
        # One worker cannot back itself up: speculation has nothing to offer here.
        config = SchedulerConfig.from_options(job.options, speculation=False)
        self.scheduler = Scheduler(TaskTable.for_job(splits, self.reducers), config)
        self.worker = WorkerState(INLINE_WORKER)
        self.job_id = f"{job.name}-inline"
        self.lock = threading.Lock()
        self.cancelled = False

    def run(self) -> JobResult:
        """Run the job to its end; see the class docstring."""
        with self.lock:
            queue: deque[Action] = deque(self.scheduler.worker_joined(INLINE_WORKER))
        try:
            while queue:
                if self.cancelled:
                    raise JobFailedError(f"job {self.job.name} was cancelled")
                result = self._perform(queue.popleft(), queue)
                if result is not None:
                    return result
        finally:
            self.worker.release(self.job_id)
        raise RuntimeError(f"the scheduler of job {self.job.name} stopped without finishing it")

    def _perform(self, action: Action, queue: deque[Action]) -> JobResult | None:
        if isinstance(action, Launch):
            queue.extend(self._run_task(action))
        elif isinstance(action, Commit):
            commit_dead_letters(self.output, action.report.task_id, action.report.dead_letters)
        elif isinstance(action, DropOutput):
            self.worker.drop(self.job_id, list(action.keys))
        elif isinstance(action, Fail):
            raise action.error
        elif isinstance(action, Finish):
            return self._finish()
        # Cancel, CheckWorker, TakeSnapshot: nothing runs beside the task, nothing to check
        # or snapshot in one process.
        return None

    def _run_task(self, launch: Launch) -> list[Action]:
        try:
            if launch.kind == "map":
                assert launch.split is not None and launch.partition is None
                report = self.worker.run_map(self.job, self.job_id, launch.task_id, launch.attempt, launch.split,
                                             self.reducers)
            else:
                assert launch.partition is not None
                tables = [self.worker.fetch(self.job_id, list(keys), launch.partition)
                          for keys in launch.sources.values()]
                report = self.worker.run_reduce(self.job, self.job_id, launch.task_id, launch.attempt,
                                                launch.partition, tables, self.output)
        except MapOutputLostError as error:
            with self.lock:
                return self.scheduler.map_output_lost(launch.task_id, launch.attempt, launch.worker, error.lost,
                                                      error.workers)
        except Exception as error:  # a task failure: the scheduler retries or fails the job
            with self.lock:
                actions = self.scheduler.failed(launch.task_id, launch.attempt, launch.worker, describe_error(error))
            for action in actions:
                if isinstance(action, Fail):
                    action.error.__cause__ = error  # the traceback of the last failure, for debugging
            return actions
        with self.lock:
            return self.scheduler.succeeded(report)

    def _finish(self) -> JobResult:
        elapsed = time.perf_counter() - self.started
        summary = {"job": self.job.name, "fingerprint": self.job.fingerprint(), "executor": "inline",
                   "elapsed_s": elapsed, **self.scheduler.summary(), "events": self.scheduler.events[-200:]}
        commit_job(self.output, summary)
        return JobResult.from_summary(self.job.name, self.output, summary)

    def status(self) -> dict[str, Any]:
        """The scheduler's view of the job (state, phase, task counts, bytes)."""
        with self.lock:
            return {**self.scheduler.status(), "executor": "inline"}


def run_local(job: MapReduceJob, workers_hint: int | None = None) -> JobResult:
    """Run ``job`` inline and return its result; raises the job's error if it failed."""
    return InlineRun(job, workers_hint).run()


class InlineJobHandle(Handle):
    """A job run by local mode in a background thread of this process."""

    def __init__(self, job: MapReduceJob) -> None:
        self.job = job
        self._run: InlineRun | None = None
        self._result: JobResult | None = None
        self._error: BaseException | None = None
        self._cancelled = False
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"inline-{job.name}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._run = InlineRun(self.job)
            if self._cancelled:
                self._run.cancelled = True
            self._result = self._run.run()
        except BaseException as error:  # surfaced by result()
            self._error = error
        finally:
            self._finished.set()

    def status(self) -> dict[str, Any]:
        """State (running/succeeded/failed/cancelled), phase and task counts."""
        if self._finished.is_set():
            if self._result is not None:
                return {**self._run.status(), "state": SUCCEEDED} if self._run else {"state": SUCCEEDED}
            state = CANCELLED if self._cancelled else FAILED
            return {"state": state, "executor": "inline", "error": str(self._error).splitlines()[0]}
        return {**self._run.status(), "state": RUNNING} if self._run else {"state": RUNNING, "executor": "inline"}

    def metrics(self) -> dict[str, Any]:
        """Task counts per phase and, once done, the job time."""
        status = self.status()
        metrics = {key: status[key] for key in ("maps", "reduces", "bytes_total", "bytes_done") if key in status}
        if self._result is not None:
            metrics.update(elapsed_s=self._result.elapsed_s, map_tasks=self._result.map_tasks,
                           reduce_tasks=self._result.reduce_tasks)
        return metrics

    def counters(self) -> Counter:
        """Counters of the tasks completed so far (all of them once the job is done)."""
        if self._result is not None:
            return Counter(self._result.counters)
        if self._run is None:
            return Counter()
        with self._run.lock:
            return self._run.scheduler.counters()

    def progress(self) -> float:
        """Fraction done: map bytes (or tasks) weigh 90%, reduce tasks 10%."""
        return 1.0 if self._result is not None else progress_of(self.status())

    def result(self, timeout_s: float | None = None) -> JobResult:
        """Wait for the job; raises its error if it failed or was cancelled."""
        if not self._finished.wait(timeout_s):
            raise ResultTimeoutError(f"job {self.job.name} still running after {timeout_s}s")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        """Stop the job before its next task (parts already written stay)."""
        self._cancelled = True
        if self._run is not None:
            self._run.cancelled = True
