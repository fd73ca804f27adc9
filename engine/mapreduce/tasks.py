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
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.common.bad_records import ErrorDescription, Isolated, call_isolating_failures
from engine.common.combine import KeyedCombineFn
from engine.common.dead_letters import DeadLetter
from engine.common.hashing import hash_partition
from engine.common.packed_keys import sort_by_keys
from engine.common.tables import concat
from engine.errors import SpecError
from engine.io.parts import write_part
from engine.io.sources import SourceBatch
from engine.io.splits import InputSplit
from engine.mapreduce.counters import collecting_counters, counted
from engine.mapreduce.rules import ships_partials
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
    schema: str = ""  # the part's Arrow schema as text (the master checks all parts agree)


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
    combiner = MapSideCombiner(job)
    input_bytes = input_records = invalid = skipped = 0
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
            isolated = call_isolating_failures(counted(job.map), batch.table, options.retry,
                                               attempts=options.bad_record_attempts, isolate_transient=False)
            letters += _letters("map", isolated, batch.location, batch.row_offsets)
            skipped += isolated.failed_rows
            for mapped in isolated.outputs:
                combiner.add(mapped)
        shuffled = combiner.result()
        counters["map_input_records"] += input_records + invalid
        counters["map_input_bytes"] += input_bytes
        counters["map_output_records"] += shuffled.num_rows
        counters["invalid_input_records"] += invalid
        counters["bad_records_skipped"] += skipped
    partitions = hash_partition(shuffled, job.keys, reducers)
    return MapTaskResult(partitions, counters, letters, input_bytes, input_records)


class MapSideCombiner:
    """A map task's output on its way to the shuffle, combined as it grows.

    A ``KeyedCombineFn`` combine accumulates with ``add`` every ``_COMBINE_EVERY_ROWS``
    rows and ships ``partial(acc)`` when the reduce is the same combiner (so counts and
    means merge correctly on the reduce side), else the finalized table.  A plain
    function combine is applied to the concatenated rows, as often.
    """

    def __init__(self, job: MapReduceJob) -> None:
        self.job = job
        self.keyed = isinstance(job.combine, KeyedCombineFn)
        self.accumulator = job.combine.create() if self.keyed else None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def add(self, mapped: pa.Table) -> None:
        """Take one mapped batch."""
        self.pending.append(mapped)
        self.pending_rows += mapped.num_rows
        if self.job.combine is not None and self.pending_rows >= _COMBINE_EVERY_ROWS:
            self._combine()

    def _combine(self) -> None:
        combine = self.job.combine
        if self.keyed:
            self.accumulator = combine.add(self.accumulator, concat(self.pending))
            if len(self.accumulator) > 1:
                self.accumulator = combine.merge([self.accumulator])
            self.pending, self.pending_rows = [], 0
        elif len(self.pending) > 1:
            self.pending = [combine(concat(self.pending))]
            self.pending_rows = self.pending[0].num_rows

    def result(self) -> pa.Table:
        """Everything taken, combined: the table to partition and shuffle."""
        job, combine = self.job, self.job.combine
        if not self.pending and not (self.keyed and self.accumulator):
            self.pending = [job.map(empty_input(job))]
        if self.keyed:
            if self.pending:
                self.accumulator = combine.add(self.accumulator, concat(self.pending))
            return combine.partial(self.accumulator) if ships_partials(job) else combine.finalize(self.accumulator)
        mapped = concat(self.pending)
        if combine is not None and (len(self.pending) > 1 or mapped.num_rows > 0):
            mapped = combine(mapped)
        return mapped


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


def _reducer(job: MapReduceJob) -> Callable[[pa.Table], pa.Table]:
    """What the reduce calls on a partition: the job's reduce, or, when map tasks ship
    partials (``ships_partials``), the combiner's finalize over the merged partials."""
    if ships_partials(job):
        combine = job.reduce
        return lambda partials: combine.finalize([partials])
    return job.reduce


def _empty_shuffle_input(job: MapReduceJob) -> pa.Table:
    """What the reduce of a partition without map outputs starts from: the mapped and
    combined form of no rows."""
    mapped = job.map(empty_input(job))
    combine = job.combine
    if isinstance(combine, KeyedCombineFn):
        accumulator = combine.add(combine.create(), mapped)
        return combine.partial(accumulator) if ships_partials(job) else combine.finalize(accumulator)
    return combine(mapped) if combine is not None else mapped


def run_reduce_task(job: MapReduceJob, partition: int, inputs: list[pa.Table], output_dir: str) -> ReduceTaskResult:
    """Merge a partition's map outputs, reduce them, sort by key and commit the part.

    If the reduce keeps failing on the whole partition, the partition is sorted by key
    and bisected between key groups: a group is reduced whole or skipped whole.
    """
    letters: list[DeadLetter] = []
    options = job.options
    reduce = counted(_reducer(job))
    with collecting_counters() as counters:
        merged = concat(inputs) if inputs else None
        if merged is None or (merged.num_columns == 0):
            merged = _empty_shuffle_input(job)
        counters["reduce_input_records"] += merged.num_rows
        try:
            reduced_parts = call_isolating_failures(reduce, merged, options.retry, strict=True,
                                                    attempts=options.bad_record_attempts,
                                                    isolate_transient=False).outputs
        except Exception as error:  # user code may raise anything
            if merged.num_rows == 0 or options.retry.is_retryable(error):
                raise
            ordered = sort_by_keys(merged, job.keys)
            isolated = call_isolating_failures(reduce, ordered, options.retry, isolate_transient=False,
                                               group_bounds=_group_bounds(ordered, job.keys))
            letters += _letters("reduce", isolated, f"partition-{partition}", np.arange(ordered.num_rows))
            counters["bad_records_skipped"] += isolated.failed_rows
            reduced_parts = isolated.outputs
        if not reduced_parts:
            reduced_parts = [reduce(merged.slice(0, 0))]
        reduced = concat(reduced_parts)
        missing = [key for key in job.keys if key not in reduced.column_names]
        if missing:
            raise SpecError(f"the reduce of partition {partition} returned no key column {missing[0]!r} "
                            f"(its columns: {', '.join(reduced.column_names) or 'none'}); a reduce must keep the keys")
        reduced = sort_by_keys(reduced, job.keys)
        counters["reduce_output_records"] += reduced.num_rows
    path = write_part(output_dir, partition, reduced, sync_directory=False)  # commit_job syncs the directory
    return ReduceTaskResult(path, reduced.num_rows, counters, letters, schema_text(reduced.schema))


def schema_text(schema: pa.Schema) -> str:
    """A schema as comparable text: field names, types and nullability, no metadata."""
    return schema.remove_metadata().to_string(show_field_metadata=False, show_schema_metadata=False)
