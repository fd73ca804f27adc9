"""Submitting a MapReduce job to Ray (the "ray" executor).

``submit`` validates the job and its inputs in the driver (so a bad path fails before
any work starts), prepares the output directory, takes a primary and a standby master
from the supervisor, hands them the supervisor's handle, and returns a ``JobHandle`` at
once.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import ray

from engine.cluster import available_cpus, cpu_nodes, require_ray
from engine.errors import InputNotFoundError
from engine.io.parts import SNAPSHOTS_DIR, prepare_directory
from engine.mapreduce.config import MasterConfig
from engine.mapreduce.handle import JobHandle
from engine.mapreduce.rules import default_reducers, resolve_output, worker_shape
from engine.mapreduce.snapshot import SnapshotStore
from engine.mapreduce.spec import MapReduceJob
from engine.runtime.supervisor import NAMESPACE, get_pool
from engine.testing.chaos import ChaosPlan


def submit(job: MapReduceJob, chaos: ChaosPlan | None = None, resume: bool = False) -> JobHandle:
    """Run ``job`` on the connected Ray cluster (``engine.connect()`` first); returns at once.

    ``resume=True`` continues a job whose driver went away, from its snapshot store:
    parts already committed are kept and reduce tasks recorded as completed are not run
    again (map outputs died with the old cluster's workers, so needed maps run again).
    When the job's snapshots were written for another fingerprint (an input file's size or
    modification time, or the job's specification, changed since), it starts over: says so
    in one line on standard error, removes them and the old result, and runs from the
    beginning; with no snapshot of the job at all it raises ``InputNotFoundError``.
    """
    require_ray("a MapReduce job on the Ray executor")
    submitted_at = time.time()  # the job's time runs from here: starting its masters and workers counts
    splits = job.source.plan_splits()  # fail on a missing input before any work starts
    chaos = chaos or ChaosPlan()
    workers, slots = worker_shape(job.options.workers, job.options.slots_per_worker, bool(chaos.workers),
                                  available_cpus(), cpu_nodes())
    reducers = job.reducers or default_reducers(workers * slots, splits)
    # No more new worker processes than map tasks: a one-split job on a fresh cluster starts
    # one, not one per CPU (warm free workers still join it).  A job that asked for a number
    # of workers, or whose fault plan names workers by number, gets them all.
    new_workers = None if job.options.workers or chaos.workers else max(1, min(workers, len(splits)))
    output = resolve_output(job)
    snapshot_dir = job.options.snapshot_dir or os.path.join(output, SNAPSHOTS_DIR)
    state = None
    fingerprint = job.fingerprint()
    store = SnapshotStore(snapshot_dir, job.name, fingerprint)
    snapshot = store.latest() if resume else None
    if resume and snapshot is None and store.stale():
        # Its parts were made from other data: never mix them with new ones.
        print(f"job {job.name}: its input files or specification changed since its snapshots in {snapshot_dir}; "
              "starting over", file=sys.stderr)
        for path in store.stale():
            os.unlink(path)
        prepare_directory(output, overwrite=True)
    elif resume:
        if snapshot is None:
            raise InputNotFoundError(f"no usable snapshot of job {job.name!r} in {snapshot_dir}")
        state = snapshot.state
        reducers = int(snapshot.state.get("reducers", reducers))
    else:
        prepare_directory(output, job.options.overwrite)
    pool = get_pool()
    config = MasterConfig(job_id=f"{job.name}-{uuid.uuid4().hex[:8]}", namespace=NAMESPACE, output=output,
                          reducers=reducers, workers=workers, snapshot_dir=snapshot_dir, fingerprint=fingerprint,
                          pool=pool, find_pool=get_pool, worker_chaos=dict(chaos.workers), master_chaos=chaos.master,
                          new_workers=new_workers, slots_per_worker=slots)
    masters = ray.get(pool.take_masters.remote(2 if job.options.backup_master else 1))
    # The job goes with the calls, not through ray.put: an object this driver put would be
    # lost with the node, and Ray's core worker ends a driver outright (exit 1) when its
    # recovery of a lost object meets the dead raylet's plasma socket, so the engine
    # would never get to restart the embedded cluster.  (A large job is still stored in
    # the object store by Ray itself, as any large argument is.)
    starts = [masters[0].start_primary.remote(job, config, 0, state)]
    if len(masters) > 1:
        starts.append(masters[1].standby.remote(job, config, 1, [masters[0]]))
    return JobHandle(job, config, masters, starts, submitted_at)
