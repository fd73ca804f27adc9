"""Submitting a job to Ray and the handle the user holds while it runs.

``submit`` validates the job and its inputs in the driver (so a bad path fails before
any work starts), prepares the output directory, starts the primary master and a
standby, and returns a ``JobHandle`` at once.  The handle follows whichever master is
primary, so it keeps working across a master takeover.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import ray

from engine.cluster import available_cpus, require_ray
from engine.errors import ResultTimeoutError
from engine.runtime.handle import Handle
from engine.io.parts import prepare_directory
from engine.testing.chaos import ChaosPlan
from engine.mapreduce.rules import default_reducers, resolve_output
from engine.mapreduce.master import JobFailedError, MasterConfig
from engine.runtime.supervisor import NAMESPACE, get_pool
from engine.mapreduce.result import JobResult
from engine.mapreduce.snapshot import SnapshotStore
from engine.mapreduce.spec import MapReduceJob



class JobHandle(Handle):
    """A running job: ``status()``, ``progress()``, ``counters()``, ``result()``, ``cancel()``."""

    def __init__(self, job: MapReduceJob, config: MasterConfig, masters: list[Any], starts: list[Any]) -> None:
        self._starts = starts  # refs of the calls that started the masters: they surface start-up errors
        self.job = job
        self.config = config
        self.job_id = config.job_id
        self._masters = masters
        self._result: JobResult | None = None
        self._last_status: dict = {}

    def _live_masters(self) -> list[Any]:
        """Known masters, newest first; a primary that took over reports its new standby."""
        for master in reversed(self._masters):
            try:
                peers = ray.get(master.peers.remote(self.job_id), timeout=10)
            except ray.exceptions.RayError:
                continue
            for peer in peers:
                if all(peer != known for known in self._masters):
                    self._masters.append(peer)
            break
        return list(reversed(self._masters))

    def status(self, tasks: bool = False) -> dict:
        """The primary master's view: state, phase, task counts, workers, snapshots, errors."""
        if self._result is not None:
            return {**self._last_status, "state": "succeeded"}
        for master in self._live_masters():
            try:
                status = ray.get(master.status.remote(self.job_id, tasks), timeout=10)
            except ray.exceptions.RayError:
                continue
            if status.get("role") == "primary":
                self._last_status = status
                return status
        return {**self._last_status, "state": self._last_status.get("state", "starting"), "role": "none"}

    def progress(self) -> float:
        """Fraction of the job done: map bytes (or tasks) weigh 90%, reduce tasks 10%."""
        status = self.status()
        if status.get("state") == "succeeded":
            return 1.0
        maps, reduces = status.get("maps"), status.get("reduces")
        if not maps:
            return 0.0
        if status.get("bytes_total"):
            map_part = status["bytes_done"] / status["bytes_total"]
        else:
            map_part = maps["completed"] / max(1, sum(maps.values()))
        reduce_part = reduces["completed"] / max(1, sum(reduces.values()))
        return 0.9 * map_part + 0.1 * reduce_part

    def metrics(self) -> dict:
        """Task counts per phase, bytes read, workers, snapshots and timings so far."""
        status = self._result.details if self._result is not None else self.status()
        return {key: status[key] for key in ("maps", "reduces", "bytes_total", "bytes_done", "snapshot_seq",
                                             "speculative_attempts", "failed_workers", "elapsed_s", "timeline")
                if key in status}

    def counters(self) -> Counter:
        """Counters so far (complete once the job is done)."""
        if self._result is not None:
            return self._result.counters
        return Counter()

    def result(self, timeout_s: float | None = None, progress: bool | None = None) -> JobResult:
        """Wait for the job and return its result; raises ``JobFailedError`` if it failed.

        With ``progress`` (default: the job's ``options.progress``) a progress bar is shown
        on standard error while waiting.
        """
        if self._result is not None:
            return self._result
        show = self.job.options.progress if progress is None else progress
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=100, desc=self.job.name, unit="%", file=sys.stderr,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        try:
            summary = self._wait(deadline, bar)
        finally:
            if bar is not None:
                bar.close()
            if self._result is None:
                pass
        self._cleanup()
        self._result = JobResult(self.job.name, self.config.output, Counter(summary["counters"]), summary["elapsed_s"],
                                 summary["map_tasks"], summary["reduce_tasks"], summary["attempts"], summary)
        return self._result

    def _wait(self, deadline: float | None, bar: Any) -> dict:
        """Follow the primary's run; on its death follow the standby that takes over."""
        runs = list(self._starts)
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise ResultTimeoutError(f"job {self.job_id} did not finish within the timeout")
            if not runs:  # both original masters are gone: follow a newer one, or start one
                runs = self._follow_or_restart_master()
            current = runs[0]
            ready, _ = ray.wait([current], timeout=0.25 if bar is not None else 1.0)
            if bar is not None:
                self._update_bar(bar)
            if not ready:
                continue
            try:
                summary = ray.get(current)
            except ray.exceptions.RayActorError:
                runs.pop(0)
                continue
            except ray.exceptions.RayTaskError as error:
                self._cleanup()
                cause = getattr(error, "cause", None) or error
                raise JobFailedError(str(cause)) from None
            if summary is None:  # a standby that saw the primary finish
                runs.pop(0)
                continue
            if bar is not None:
                bar.n = 100
                bar.refresh()
            return summary

    def _follow_or_restart_master(self) -> list[Any]:
        """The run to wait on after the first two masters died: a live primary started
        by a takeover, or else (all masters lost, e.g. with their node) a new master that
        continues from the snapshot store, supervised from here."""
        for master in self._live_masters():
            try:
                if ray.get(master.ping.remote(self.job_id), timeout=10).get("role") == "primary":
                    return [master.wait_done.remote(self.job_id, None)]
            except ray.exceptions.RayError:
                continue
        self._restarts = getattr(self, "_restarts", 0) + 1
        if self._restarts > 3:
            raise JobFailedError(f"job {self.job_id} lost its masters {self._restarts - 1} times")
        time.sleep(0.5)
        master = ray.get(get_pool().take_masters.remote(1, list(self._masters)))[0]
        self._masters.append(master)
        job_ref = ray.put(self.job)
        return [master.take_over.remote(job_ref, self.config, len(self._masters) - 1)]

    def _update_bar(self, bar: Any) -> None:
        bar.n = round(100 * self.progress())
        status = self._last_status
        if status.get("maps"):
            bar.set_postfix_str(f"maps {status['maps']['completed']}/{sum(status['maps'].values())} "
                                f"reduces {status['reduces']['completed']}/{sum(status['reduces'].values())}")
        bar.refresh()

    def cancel(self) -> None:
        """Stop the job: kill its masters and workers.  Parts already written stay."""
        self._cleanup()

    def _cleanup(self) -> None:
        for master in self._masters:
            try:
                master.forget.remote(self.job_id)
            except Exception:
                pass
        try:
            get_pool().release.remote(self.job_id)
        except Exception:
            pass


def submit(job: MapReduceJob, chaos: ChaosPlan | None = None, resume: bool = False) -> JobHandle:
    """Run ``job`` on the connected Ray cluster (``engine.connect()`` first); returns at once.

    ``resume=True`` continues a job whose driver went away, from its snapshot store:
    parts already committed are kept and reduce tasks recorded as completed are not run
    again (map outputs died with the old cluster's workers, so needed maps run again).
    """
    require_ray("a MapReduce job on the Ray executor")
    job.source.plan_splits()  # fail on a missing input before any work starts
    workers = job.options.workers or available_cpus()
    reducers = job.reducers or default_reducers(workers)
    output = resolve_output(job)
    snapshot_dir = job.options.snapshot_dir or os.path.join(output, "_snapshots")
    table = None
    fingerprint = job.fingerprint()
    if resume:
        snapshot = SnapshotStore(snapshot_dir, job.name, fingerprint).latest()
        if snapshot is None:
            raise FileNotFoundError(f"no usable snapshot of job {job.name!r} in {snapshot_dir}")
        table = snapshot.state["tasks"]
        reducers = int(snapshot.state.get("reducers", reducers))
    else:
        prepare_directory(output, job.options.overwrite)
    job_id = f"{job.name}-{uuid.uuid4().hex[:8]}"
    chaos = chaos or ChaosPlan()
    config = MasterConfig(job_id=job_id, namespace=NAMESPACE, output=output, reducers=reducers, workers=workers,
                          snapshot_dir=snapshot_dir, fingerprint=fingerprint, worker_chaos=dict(chaos.workers), master_chaos=chaos.master)
    masters = ray.get(get_pool().take_masters.remote(2 if job.options.backup_master else 1))
    job_ref = ray.put(job)
    starts = [masters[0].start_primary.remote(job_ref, config, 0, table, [])]
    if len(masters) > 1:
        starts.append(masters[1].standby.remote(job_ref, config, 1, [masters[0]]))
    return JobHandle(job, config, masters, starts)
