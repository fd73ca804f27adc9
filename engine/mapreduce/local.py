"""Local mode (paper §4.7): the same job, sequentially, in this process, without Ray.

It runs the very task functions the Ray workers run, so it is the oracle the
distributed executor is tested against, and a debugger-friendly way to run a job.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pyarrow as pa

from engine.io.parts import prepare_directory, write_success
from engine.mapreduce.counters import add_counters
from engine.mapreduce.result import JobResult
from engine.mapreduce.spec import MapReduceJob
from engine.mapreduce.rules import check_bad_records, commit_dead_letters, default_reducers, resolve_output
from engine.mapreduce.tasks import run_map_task, run_reduce_task


def run_local(job: MapReduceJob, workers_hint: int | None = None) -> JobResult:
    """Run ``job`` inline and return its result; raises on the first unrecoverable error."""
    started = time.perf_counter()
    splits = job.source.plan_splits()
    reducers = job.reducers or default_reducers(workers_hint or job.options.workers or os.cpu_count() or 1)
    output = resolve_output(job)
    prepare_directory(output, job.options.overwrite)
    counters: Counter = Counter()
    partitions: list[list[pa.Table]] = [[] for _ in range(reducers)]
    for number, split in enumerate(splits):
        result = run_map_task(job, split, reducers)
        add_counters(counters, result.counters)
        commit_dead_letters(output, f"map-{number:05d}", result.dead_letters)
        for index, table in enumerate(result.partitions):
            partitions[index].append(table)
    check_bad_records(counters, job.options.max_bad_record_fraction)
    for index in range(reducers):
        result = run_reduce_task(job, index, partitions[index], output)
        partitions[index] = []
        add_counters(counters, result.counters)
        commit_dead_letters(output, f"reduce-{index:05d}", result.dead_letters)
    check_bad_records(counters, job.options.max_bad_record_fraction)
    elapsed = time.perf_counter() - started
    summary = {"job": job.name, "fingerprint": job.fingerprint(), "executor": "inline", "map_tasks": len(splits),
               "reduce_tasks": reducers, "counters": dict(counters), "elapsed_s": elapsed}
    write_success(output, summary)
    return JobResult(job.name, output, counters, elapsed, len(splits), reducers)
