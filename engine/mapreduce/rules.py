"""Rules of a MapReduce run that every executor follows, in one place: how many reducers,
where the output goes, what the shuffle carries, when bad records fail the job, how a
task's dead letters and the finished job are committed."""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from typing import Sequence

from engine.common.combine import KeyedCombineFn
from engine.common.dead_letters import DeadLetter, DeadLetterStore
from engine.errors import JobFailedError, TooManyBadRecordsError
from engine.io.parts import DEAD_LETTERS_DIR, write_success
from engine.io.splits import InputSplit
from engine.mapreduce.spec import MapReduceJob


SHUFFLE_PARTITION_BYTES = 64 * 1024 * 1024


def worker_shape(workers: int | None, slots: int | None, named_by_plan: bool, cpus: int,
                 nodes: int) -> tuple[int, int]:
    """(worker processes, task slots each) for a job on a cluster of ``cpus`` CPUs over
    ``nodes`` nodes, as ``JobOptions`` documents: ``workers`` given (or a fault plan that
    names workers): that many, ``slots`` each (default 1); only ``slots`` given: enough
    workers of that size to cover the CPUs; neither: one worker with a slot per CPU on one
    node, one single-slot worker per CPU on several."""
    if workers or named_by_plan:
        return workers or cpus, slots or 1
    if slots:
        return max(1, -(-cpus // slots)), slots
    return (1, max(1, cpus)) if nodes <= 1 else (max(1, cpus), 1)


def default_reducers(workers: int, splits: Sequence[InputSplit] = ()) -> int:
    """Reducers default to twice the task slots (``workers``: the job's slots in all;
    enough to balance, few enough to stay fast), but, when the input's size is known (text
    splits), no more than one per ``SHUFFLE_PARTITION_BYTES`` of input and at least one
    per slot: a small job runs its reduces in one wave instead of two (as Spark's adaptive
    execution coalesces small shuffle partitions)."""
    reducers = 2 * workers
    if splits and all(split.kind == "text" for split in splits):
        input_bytes = sum(split.end - split.start for split in splits)
        reducers = min(reducers, max(workers, -(-input_bytes // SHUFFLE_PARTITION_BYTES)))
    return reducers


def resolve_output(job: MapReduceJob) -> str:
    """The job's output directory, or a fresh private temporary one when it has none."""
    return job.output if job.output is not None else tempfile.mkdtemp(prefix=f"engine-{job.name}-")


def ships_partials(job: MapReduceJob) -> bool:
    """True when map tasks shuffle the combiner's partial tables instead of finalized rows:
    the combine is a ``KeyedCombineFn`` and the reduce is the same combiner, which merges
    the partials and finalizes them (so a count or a mean comes out right)."""
    return isinstance(job.combine, KeyedCombineFn) and isinstance(job.reduce, KeyedCombineFn) \
        and job.reduce == job.combine


def check_bad_records(counters: Counter, limit: float) -> None:
    """Fail the job when bad records (skipped by the map or reduce, or not readable, such
    as invalid UTF-8) exceed ``limit`` of the input records."""
    skipped = counters.get("bad_records_skipped", 0) + counters.get("invalid_input_records", 0)
    total = max(1, counters.get("map_input_records", 0))
    if skipped and skipped / total > limit:
        raise TooManyBadRecordsError(
            f"{skipped} of {total} records were bad ({skipped / total:.1%}), above the allowed "
            f"{limit:.1%} (JobOptions.max_bad_record_fraction); see the dead letters for the first ones")


def check_bad_records_so_far(counters: Counter, limit: float, done_fraction: float) -> None:
    """Fail a running job early when its bad records already exceed ``limit`` of all the
    records it will read, even if the rest of the input held no bad record at all.

    The total is estimated from the input read so far (``map_input_records`` over
    ``done_fraction``, the share of the input mapped), so a job whose maps fail on every
    row stops after its first map tasks instead of bisecting all of its input.
    """
    skipped = counters.get("bad_records_skipped", 0) + counters.get("invalid_input_records", 0)
    read = counters.get("map_input_records", 0)
    if not skipped or not 0.0 < done_fraction < 1.0:
        return
    estimated_total = read / done_fraction
    if skipped > limit * estimated_total:
        raise TooManyBadRecordsError(
            f"{skipped} of the first {read} records were bad, more than the allowed {limit:.1%} "
            f"(JobOptions.max_bad_record_fraction) of the about {estimated_total:.0f} records of the "
            f"whole input even if the rest were good: stopped early; see the dead letters for the first ones")


def check_part_schema(first: tuple[str, str] | None, task_id: str, schema: str) -> tuple[str, str]:
    """Fail the job when reduce ``task_id`` wrote a part whose schema (text) differs from the
    first accepted part's ``(task, schema)``: the result would not read back as one table.
    Returns the first part's ``(task, schema)``."""
    if first is None:
        return (task_id, schema)
    if schema != first[1]:
        raise JobFailedError(f"{task_id} wrote a part whose schema ({schema.replace(chr(10), ', ')}) differs from "
                             f"{first[0]}'s ({first[1].replace(chr(10), ', ')}); every reduce must return the same schema")
    return first


def dead_letter_dir(output: str) -> str:
    """Where a job's dead letters are stored: a ``DeadLetterStore`` inside its output."""
    return os.path.join(output, DEAD_LETTERS_DIR)


def commit_dead_letters(output: str, task_id: str, letters: Sequence[DeadLetter]) -> list[str]:
    """Store the dead letters of a completed task.  Keyed by task and position, so a task
    whose completion is recorded twice (a master taking over) keeps one copy."""
    if not letters:
        return []
    store = DeadLetterStore(dead_letter_dir(output))
    return [store.add_letter(letter, "mapreduce", key=f"{task_id}/{index}") for index, letter in enumerate(letters)]


def commit_job(output: str, summary: dict) -> None:
    """Commit a finished job: its summary (``_job.json``, without the event log), then
    ``_SUCCESS``, last."""
    write_success(output, {key: value for key, value in summary.items() if key != "events"})
