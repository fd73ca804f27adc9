"""A job importable by name from a driver that is about to go away and by the one that
resumes it (both must describe the very same job, or its snapshot is refused).

Run as a script it is that first driver: ``python -m tests.fault.resume_job IN OUT``
submits the job, waits until some reduce tasks are committed, then stops its embedded
cluster and exits with status 3, leaving the snapshot store behind.
"""

from __future__ import annotations

import sys
import time

import pyarrow as pa

import engine
from jobs.wordcount_job import SUM_COUNTS, count_words_in_lines


def slow_sum(table: pa.Table) -> pa.Table:
    """The word-count reduce, slowed so the driver can die in the middle of the reduce phase."""
    time.sleep(0.3)
    return SUM_COUNTS(table)


def resumable_job(inputs: str, output: str, overwrite: bool = False) -> engine.MapReduceJob:
    """The job both drivers run: snapshots after every task, 12 slow reduce tasks."""
    return engine.MapReduceJob(
        name="resumable", source=engine.TextSource(inputs, split_size=3000), map=count_words_in_lines,
        combine=SUM_COUNTS, reduce=slow_sum, keys="word", reducers=12, output=output,
        options=engine.JobOptions(workers=2, speculation=False, snapshot_every_tasks=1, overwrite=overwrite))


def main(argv: list[str]) -> int:
    """Be the driver that goes away mid-job."""
    from tests.fault.resume_job import resumable_job as by_name  # not __main__'s copy: same fingerprint

    engine.connect(num_cpus=2)
    handle = engine.run(by_name(argv[0], argv[1]))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = handle.status()
        if status.get("reduces", {}).get("completed", 0) >= 3:
            break
        time.sleep(0.05)
    else:
        return 1
    import ray

    ray.shutdown()  # the whole cluster, its workers and masters are gone
    return 3


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
