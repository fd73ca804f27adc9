"""What one map task and one reduce task do: pure functions, run by every executor.

The inline executor calls these in-process; Ray worker actors call the same functions,
so local mode is a faithful oracle of the distributed run.  Nothing here schedules,
retries whole tasks or talks to Ray.  User code is called through the engine's one
bad-record path (``engine.common.bad_records``): records it keeps failing on are
isolated and returned as dead letters, which the executor commits with the task.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.common.bad_records import ErrorDescription, Isolated, call_isolating_failures
from engine.common.dead_letters import DeadLetter
from engine.common.hashing import hash_partition
from engine.common.tables import concat, sort_by_keys
from engine.io.parts import write_part
from engine.io.sources import SourceBatch
from engine.io.splits import InputSplit
from engine.mapreduce.counters import collecting_counters
from engine.mapreduce.spec import MapReduceJob

# A combine step runs whenever this many un-combined map output rows have piled up.
_COMBINE_EVERY_ROWS = 2_000_000


@dataclass
class MapTaskResult:
    """A map task's output: one table per reduce partition, what it counted, its dead letters."""

    partitions: list[pa.Table]
    counters: Counter
    dead_letters: list[DeadLetter] = field(default_factory=list)
    input_bytes: int = 0
    input_records: int = 0


@dataclass
class ReduceTaskResult:
    """A reduce task's committed part, what it counted and its dead letters."""

    path: str
    rows: int
    counters: Counter
    dead_letters: list[DeadLetter] = field(default_factory=list)


def _read_letter(batch: SourceBatch) -> DeadLetter:
    """The bad input records of one batch (lines that are not UTF-8) as one dead letter."""
    bad = batch.bad_records
    rows = pa.table({"line": pa.array([record.data for record in bad], pa.binary())})
    first = bad[0].reason
    message = first if len(bad) == 1 else f"{len(bad)} records could not be read; first: {first}"
    return DeadLetter("read", rows, ErrorDescription("UnicodeDecodeError", message),
                      {"location": batch.location, "offsets": [r.offset for r in bad],
                       "reasons": [r.reason for r in bad]})


def _letters(step: str, isolated: Isolated, location: str, offsets: np.ndarray) -> list[DeadLetter]:
    return [DeadLetter(step, group.rows, group.error,
                       {"location": location, "offsets": offsets[group.positions].tolist()}, group.attempts)
            for group in isolated.failed]


def empty_input(job: MapReduceJob) -> pa.Table:
    """A zero-row table shaped like the job's input (used to learn output schemas)."""
    return job.source.empty_table()


def run_map_task(job: MapReduceJob, split: InputSplit, reducers: int) -> MapTaskResult:
    """Read one split, map it batch by batch (combining as it goes) and partition by key."""
    letters: list[DeadLetter] = []
    outputs: list[pa.Table] = []
    pending_rows = input_bytes = input_records = invalid = skipped = 0
    options = job.options
    with collecting_counters() as counters:
        for batch in job.source.read_split(split):
            input_bytes += batch.input_bytes
            input_records += batch.record_count
            if batch.bad_records:
                invalid += len(batch.bad_records)
                letters.append(_read_letter(batch))
            if batch.table.num_rows == 0:
                continue
            isolated = call_isolating_failures(job.map, batch.table, options.retry,
                                               attempts=options.bad_record_attempts, isolate_transient=False)
            letters += _letters("map", isolated, batch.location, batch.row_offsets)
            skipped += isolated.failed_rows
            for mapped in isolated.outputs:
                outputs.append(mapped)
                pending_rows += mapped.num_rows
            if job.combine is not None and pending_rows >= _COMBINE_EVERY_ROWS and len(outputs) > 1:
                outputs = [job.combine(concat(outputs))]
                pending_rows = outputs[0].num_rows
        if not outputs:
            outputs = [job.map(empty_input(job))]
        mapped_all = concat(outputs)
        if job.combine is not None and (len(outputs) > 1 or mapped_all.num_rows > 0):
            mapped_all = job.combine(mapped_all)
        counters["map_input_records"] += input_records + invalid
        counters["map_input_bytes"] += input_bytes
        counters["map_output_records"] += mapped_all.num_rows
        counters["invalid_input_records"] += invalid
        counters["bad_records_skipped"] += skipped
    partitions = hash_partition(mapped_all, job.keys, reducers)
    return MapTaskResult(partitions, counters, letters, input_bytes, input_records)


def _group_bounds(table: pa.Table, keys: tuple[str, ...]) -> np.ndarray:
    """Row offsets where a new key group starts in a key-sorted table, plus the end."""
    if table.num_rows == 0:
        return np.array([0])
    change = np.zeros(table.num_rows, dtype=bool)
    change[0] = True
    for key in keys:
        values = table.column(key)
        left, right = values.slice(1), values.slice(0, table.num_rows - 1)
        differs = pc.fill_null(pc.not_equal(left, right), True)
        both_null = pc.and_(pc.is_null(left), pc.is_null(right))
        change[1:] |= np.asarray(pc.and_not(differs, both_null))
    return np.append(np.flatnonzero(change), table.num_rows)


def run_reduce_task(job: MapReduceJob, partition: int, inputs: list[pa.Table], output_dir: str) -> ReduceTaskResult:
    """Merge a partition's map outputs, reduce them, sort by key and commit the part.

    If the reduce keeps failing on the whole partition, the partition is sorted by key
    and bisected between key groups: a group is reduced whole or skipped whole.
    """
    letters: list[DeadLetter] = []
    options = job.options
    with collecting_counters() as counters:
        merged = concat(inputs) if inputs else None
        if merged is None or (merged.num_columns == 0):
            merged = job.map(empty_input(job))
            if job.combine is not None:
                merged = job.combine(merged)
        counters["reduce_input_records"] += merged.num_rows
        try:
            reduced_parts = call_isolating_failures(job.reduce, merged, options.retry, strict=True,
                                                    attempts=options.bad_record_attempts,
                                                    isolate_transient=False).outputs
        except Exception as error:  # user code may raise anything
            if merged.num_rows == 0 or options.retry.is_retryable(error):
                raise
            ordered = sort_by_keys(merged, job.keys)
            isolated = call_isolating_failures(job.reduce, ordered, options.retry, isolate_transient=False,
                                               group_bounds=_group_bounds(ordered, job.keys))
            letters += _letters("reduce", isolated, f"partition-{partition}", np.arange(ordered.num_rows))
            counters["bad_records_skipped"] += isolated.failed_rows
            reduced_parts = isolated.outputs
        if not reduced_parts:
            reduced_parts = [job.reduce(merged.slice(0, 0))]
        reduced = sort_by_keys(concat(reduced_parts), job.keys)
        counters["reduce_output_records"] += reduced.num_rows
    path = write_part(output_dir, partition, reduced)
    return ReduceTaskResult(path, reduced.num_rows, counters, letters)

