"""The handle of a MapReduce job on Ray: it follows whichever master is primary.

A takeover changes the primary; the handle learns of new masters from the old ones
(``peers``) and keeps working.  If every master of the job is lost (e.g. with their
node), it starts a new one that continues from the snapshot store, a few times at most
(the engine's one ``RetryPolicy``).  Every wait on the cluster is bounded and gives up
as soon as ``engine.cluster.node_loss()`` reports the cluster's GCS server or raylet
lost: on the embedded cluster the handle then restarts it and resumes the job from its
snapshot store (saying so in one line), on an external one the job fails with a line
naming what was lost (decisions: ``engine.runtime.node_watch.Recovery``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from typing import Any

import ray

from engine import cluster
from engine.common.retry import RetryPolicy
from engine.errors import JobFailedError, ResultTimeoutError
from engine.mapreduce.config import MasterConfig
from engine.mapreduce.result import JobResult
from engine.mapreduce.progress import progress_of
from engine.mapreduce.snapshot import SnapshotStore
from engine.mapreduce.spec import MapReduceJob
from engine.runtime.handle import CANCELLED, Handle
from engine.runtime.node_watch import GiveUp, NodeLoss, Recovery


class _MastersLost(Exception):
    """Every master this handle knows of is gone."""


class _ClusterLost(Exception):
    """The cluster's GCS server or raylet is gone (``loss`` says which)."""

    def __init__(self, loss: NodeLoss) -> None:
        super().__init__(loss.what())
        self.loss = loss


# The first masters, then up to three new ones started from the snapshot store.
MASTER_RESTARTS = RetryPolicy(max_attempts=4, backoff="fixed", base_delay_s=0.5, jitter=0.0,
                              retry_on=(_MastersLost,))


class JobHandle(Handle):
    """A running job: ``status()``, ``progress()``, ``counters()``, ``result()``, ``cancel()``."""

    def __init__(self, job: MapReduceJob, config: MasterConfig, masters: list[Any], starts: list[Any],
                 submitted_at: float | None = None) -> None:
        self._starts = starts  # refs of the calls that started the masters: they surface start-up errors
        self.submitted_at = time.time() if submitted_at is None else submitted_at
        self.job = job
        self.config = config
        self.job_id = config.job_id
        self._masters = masters
        self._result: JobResult | None = None
        self._last_status: dict = {}
        self._cancelled = False
        self._recovery = Recovery(job.name, cluster.node_watch_options())
        self._generation = cluster.generation()  # the cluster its masters live on
        self.recoveries: list[str] = []  # one line per restart of the embedded cluster

    def _ask(self, ref: Any, timeout_s: float = 10.0) -> Any:
        """``ray.get(ref)`` within ``timeout_s`` (``GetTimeoutError``), giving up at once
        with ``_ClusterLost`` when the cluster is lost."""
        end = time.monotonic() + timeout_s
        while True:
            loss = cluster.node_loss(self._generation)
            if loss is not None:
                raise _ClusterLost(loss)
            left = end - time.monotonic()
            ready, _ = ray.wait([ref], timeout=max(0.0, min(0.25, left)))
            if ready:
                return ray.get(ref)
            if left <= 0:
                raise ray.exceptions.GetTimeoutError(f"no answer within {timeout_s}s")

    def _live_masters(self) -> list[Any]:
        """Known masters, newest first; a primary that took over reports its new standby."""
        for master in reversed(self._masters):
            try:
                peers = self._ask(master.peers.remote(self.job_id))
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
        if self._cancelled:
            return {**self._last_status, "state": CANCELLED}
        try:
            for master in self._live_masters():
                try:
                    status = self._ask(master.status.remote(self.job_id, tasks))
                except ray.exceptions.RayError:
                    continue
                if status.get("role") == "primary":
                    self._last_status = status
                    return status
        except _ClusterLost as lost:  # result() deals with it; status just says so
            return {**self._last_status, "state": self._last_status.get("state", "starting"), "role": "none",
                    "cluster_lost": lost.loss.what()}
        return {**self._last_status, "state": self._last_status.get("state", "starting"), "role": "none"}

    def progress(self) -> float:
        """Fraction of the job done: map bytes (or tasks) weigh 90%, reduce tasks 10%."""
        return progress_of(self.status())

    def metrics(self) -> dict:
        """Task counts per phase, bytes read, workers, snapshots and timings so far."""
        status = self._result.details if self._result is not None else self.status()
        return {key: status[key] for key in ("maps", "reduces", "bytes_total", "bytes_done", "snapshot_seq",
                                             "speculative_attempts", "failed_workers", "elapsed_s", "timeline", "recovery")
                if key in status}

    def counters(self) -> Counter:
        """Counters of the tasks completed so far (all of them once the job is done)."""
        if self._result is not None:
            return self._result.counters
        return Counter(self.status().get("counters", {}))

    def result(self, timeout_s: float | None = None, progress: bool | None = None) -> JobResult:
        """Wait for the job and return its result; raises ``JobFailedError`` if it failed.

        With ``progress`` (default: the job's ``options.progress``) a progress bar is shown
        on standard error while waiting.
        """
        if self._result is not None:
            return self._result
        if self._cancelled:
            raise JobFailedError(f"job {self.job_id} was cancelled")
        show = self.job.options.progress if progress is None else progress
        bar = None
        if show:
            from tqdm import tqdm

            bar = tqdm(total=100, desc=self.job.name, unit="%", file=sys.stderr,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        runs = list(self._starts)
        try:
            while True:
                try:
                    summary = MASTER_RESTARTS.call(self._follow, runs, deadline, bar)
                    break
                except _ClusterLost as lost:
                    runs = self._recover(lost.loss)
        except _MastersLost:
            self._cleanup()
            raise JobFailedError(f"job {self.job_id} lost its masters {MASTER_RESTARTS.max_attempts} times") from None
        finally:
            if bar is not None:
                bar.close()
        self._cleanup()
        if self.recoveries:
            summary = {**summary, "events": [*self.recoveries, *summary.get("events", [])],
                       "cluster_restarts": len(self.recoveries)}
        # The job's time is the user's: from submission (starting masters and workers, and any
        # takeover or cluster restart, count) to the commit; the master's own clock is kept.
        finished_at = summary["started_at"] + summary["elapsed_s"]
        summary = {**summary, "master_elapsed_s": summary["elapsed_s"], "submitted_at": self.submitted_at,
                   "elapsed_s": max(summary["elapsed_s"], finished_at - self.submitted_at)}
        self._result = JobResult.from_summary(self.job.name, self.config.output, summary)
        return self._result

    def _follow(self, runs: list[Any], deadline: float | None, bar: Any) -> dict:
        """Wait on the primary's run; on its death follow the standby that takes over.
        Raises ``_MastersLost`` when no master is left; called again, it starts a new
        one, which continues from the snapshot store."""
        if not runs:
            runs += self._restart_master()
        while True:
            if not runs:
                live = self._live_primary()
                if live is None:
                    raise _MastersLost()
                runs.append(live)
            if deadline is not None and time.monotonic() > deadline:
                raise ResultTimeoutError(f"job {self.job_id} did not finish within the timeout")
            loss = cluster.node_loss(self._generation)
            if loss is not None:
                raise _ClusterLost(loss)
            ready, _ = ray.wait([runs[0]], timeout=0.25 if bar is not None else 1.0)
            if bar is not None:
                self._update_bar(bar)
            if not ready:
                continue
            try:
                summary = ray.get(runs[0])
            except ray.exceptions.RayActorError:
                runs.pop(0)
                continue
            except ray.exceptions.RayTaskError as error:
                self._cleanup()
                cause = getattr(error, "cause", None)
                if isinstance(cause, JobFailedError):
                    raise cause from None
                raise JobFailedError(str(cause or error)) from None
            if summary is None:  # a standby that saw the primary finish
                runs.pop(0)
                continue
            if bar is not None:
                bar.n = 100
                bar.refresh()
            return summary

    def _live_primary(self) -> Any | None:
        """The run of a live primary started by a takeover, if there is one."""
        for master in self._live_masters():
            try:
                if self._ask(master.ping.remote(self.job_id)).get("role") == "primary":
                    return master.wait_done.remote(self.job_id, None)
            except ray.exceptions.RayError:
                continue
        return None

    def _restart_master(self) -> list[Any]:
        """Every master is lost: a new one continues from the snapshot store."""
        master = self._ask(self.config.find_pool().take_masters.remote(1, list(self._masters)), 60.0)[0]
        self._masters.append(master)
        return [master.take_over.remote(self.job, self.config, len(self._masters) - 1)]

    def _recover(self, loss: NodeLoss) -> list[Any]:
        """The cluster is lost: fail with one line, or restart the embedded cluster and
        resume the job from its snapshot store (from the start if it has none yet);
        returns the new primary's run."""
        decision = self._recovery.decide(loss)
        if isinstance(decision, GiveUp):
            raise JobFailedError(decision.message) from None
        from engine.mapreduce.submit import submit  # submit builds handles: imported when needed

        cluster.restart_embedded(self._generation)  # unless another run restarted it already
        snapshot = SnapshotStore(self.config.snapshot_dir, self.job.name, self.config.fingerprint).latest()
        if snapshot is not None:
            fresh = submit(self.job, resume=True)
        else:  # nothing to resume from: the job's own output directory starts over
            fresh = submit(dataclasses.replace(self.job, options=dataclasses.replace(self.job.options, overwrite=True)))
        line = self._recovery.resumed_line(loss, snapshot is not None)
        print(line, file=sys.stderr, flush=True)
        self.recoveries.append(line)
        self.config, self.job_id, self._masters = fresh.config, fresh.job_id, fresh._masters
        self._generation = fresh._generation
        self._last_status = {}
        return list(fresh._starts)

    def _update_bar(self, bar: Any) -> None:
        bar.n = round(100 * self.progress())
        status = self._last_status
        if status.get("maps"):
            bar.set_postfix_str(f"maps {status['maps']['completed']}/{sum(status['maps'].values())} "
                                f"reduces {status['reduces']['completed']}/{sum(status['reduces'].values())}")
        bar.refresh()

    def cancel(self) -> None:
        """Stop the job: its masters stop it and its workers go back to the pool.  Parts
        already written stay."""
        if self._result is None:
            self._cancelled = True
        self._cleanup(wait=True)

    def _cleanup(self, wait: bool = False) -> None:
        if cluster.node_loss(self._generation) is not None:  # nothing left to tell
            return
        forgotten = []
        for master in self._masters:
            try:
                forgotten.append(master.forget.remote(self.job_id))
            except Exception:  # a dead master has nothing to forget
                pass
        if wait and forgotten:  # a cancelled job's workers are back in the pool when cancel() returns
            try:
                ray.wait(forgotten, num_returns=len(forgotten), timeout=15.0)
            except Exception:
                pass
        try:
            self.config.find_pool().release.remote(self.job_id)  # the pool now: it may have been replaced
        except Exception:  # no pool to be found releases nothing
            pass
