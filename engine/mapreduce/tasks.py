"""What one map task and one reduce task do: pure functions, run by every executor.

The inline executor calls these in-process; Ray worker actors call the same functions,
so local mode is a faithful oracle of the distributed run.  Nothing here schedules,
retries whole tasks or talks to Ray.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.common.atomic_files import write_parquet_atomically
from engine.common.tables import concat, sort_by_keys

from engine.common.hashing import hash_partition
from engine.io.parts import write_part
from engine.io.splits import InputSplit
from engine.io.text import LINE_COLUMN
from engine.mapreduce.counters import collecting_counters
from engine.mapreduce.spec import MapReduceJob
from engine.errors import TooManyBadRecordsError

DEAD_LETTER_SCHEMA = pa.schema([
    ("stage", pa.string()),
    ("source", pa.string()),
    ("offset", pa.int64()),
    ("reason", pa.string()),
    ("record", pa.binary()),
])

# A combine step runs whenever this many un-combined map output rows have piled up.
_COMBINE_EVERY_ROWS = 2_000_000


class TransientTaskError(RuntimeError):
    """User code kept raising errors marked transient past the retry limit."""


@dataclass
class MapTaskResult:
    """A map task's output: one table per reduce partition, plus what it counted."""

    partitions: list[pa.Table]
    counters: Counter
    dead_letters: pa.Table
    input_bytes: int = 0
    input_records: int = 0


@dataclass
class ReduceTaskResult:
    """A reduce task's committed part and what it counted."""

    path: str
    rows: int
    counters: Counter
    dead_letters: pa.Table = field(default_factory=DEAD_LETTER_SCHEMA.empty_table)


@dataclass(frozen=True)
class _Batch:
    table: pa.Table
    source: str
    offsets: np.ndarray  # per row: byte offset (text) or row number (tables, Parquet)


def _read_split(job: MapReduceJob, split: InputSplit, dead: list[dict]) -> Iterator[tuple[_Batch, int]]:
    """Batches of one split with their per-row source offsets, and the bytes each covered."""
    for batch in job.source.read_split(split):
        for bad in batch.bad_records:
            dead.append({"stage": "read", "source": bad.location, "offset": bad.offset,
                         "reason": bad.reason, "record": bad.data})
        yield _Batch(batch.table, batch.location, batch.row_offsets), batch.input_bytes


def empty_input(job: MapReduceJob) -> pa.Table:
    """A zero-row table shaped like the job's input (used to learn output schemas)."""
    return job.source.empty_table()


def _record_bytes(table: pa.Table, row: int) -> bytes:
    """A bad record as bytes: the raw line for text, JSON of the row otherwise."""
    if table.num_columns == 1 and table.column_names[0] == LINE_COLUMN:
        value = table.column(0)[row].as_py()
        return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value or b"")
    return json.dumps(table.slice(row, 1).to_pylist()[0], default=str).encode()


def _is_transient(error: BaseException) -> bool:
    try:
        from engine.common.retry import is_transient
    except ImportError:  # the toolkit is optional for this module
        return type(error).__name__ == "TransientError"
    return is_transient(error)


def _call_retrying(function: Callable[[pa.Table], pa.Table], table: pa.Table, attempts: int) -> pa.Table:
    """Call ``function``; retry transient errors with backoff, and others ``attempts`` times."""
    failures = 0
    transient_failures = 0
    while True:
        try:
            return function(table)
        except Exception as error:  # user code may raise anything
            if _is_transient(error):
                transient_failures += 1
                if transient_failures >= 6:
                    raise TransientTaskError(f"transient errors persisted after {transient_failures} tries: {error}") from error
                time.sleep(min(1.0, 0.01 * 2 ** transient_failures) * (0.5 + 0.5 * np.random.random()))
                continue
            failures += 1
            if failures >= attempts:
                raise


def apply_skipping_bad_records(function: Callable[[pa.Table], pa.Table], batch: _Batch, stage: str,
                               attempts: int, dead: list[dict], group_bounds: np.ndarray | None = None) -> list[pa.Table]:
    """Apply ``function`` to a batch; if it keeps failing, bisect to skip just the bad rows.

    ``group_bounds`` (sorted row offsets of key-group starts) keeps a reduce's key groups
    whole while bisecting, so a group is either reduced entirely or skipped entirely.
    The common path is a single call; bisection only runs on failure.
    """
    try:
        return [_call_retrying(function, batch.table, attempts)]
    except TransientTaskError:
        raise
    except Exception as error:
        rows = batch.table.num_rows
        boundaries = group_bounds if group_bounds is not None else np.arange(rows + 1)
        if len(boundaries) <= 2 or rows <= 1:
            for row in range(rows):
                dead.append({"stage": stage, "source": batch.source, "offset": int(batch.offsets[row]),
                             "reason": f"{type(error).__name__}: {error}"[:1000], "record": _record_bytes(batch.table, row)})
            if rows == 0:
                raise
            return []
        middle = len(boundaries) // 2
        cut = int(boundaries[middle])
        left = _Batch(batch.table.slice(0, cut), batch.source, batch.offsets[:cut])
        right = _Batch(batch.table.slice(cut), batch.source, batch.offsets[cut:])
        left_bounds = boundaries[: middle + 1] if group_bounds is not None else None
        right_bounds = boundaries[middle:] - cut if group_bounds is not None else None
        return (apply_skipping_bad_records(function, left, stage, 1, dead, left_bounds)
                + apply_skipping_bad_records(function, right, stage, 1, dead, right_bounds))


DEAD_LETTERS_FILE = "_dead_letters.parquet"


def write_dead_letters(directory: str, table: pa.Table) -> str | None:
    """Write the job's dead letters (bad records) next to its parts; None when there are none."""
    if table.num_rows == 0:
        return None
    path = os.path.join(directory, DEAD_LETTERS_FILE)
    write_parquet_atomically(path, table)
    return path


def dead_letter_table(rows: list[dict]) -> pa.Table:
    """The dead-letter rows as a table with ``DEAD_LETTER_SCHEMA``."""
    if not rows:
        return DEAD_LETTER_SCHEMA.empty_table()
    return pa.Table.from_pylist(rows, schema=DEAD_LETTER_SCHEMA)


def run_map_task(job: MapReduceJob, split: InputSplit, reducers: int) -> MapTaskResult:
    """Read one split, map it batch by batch (combining as it goes) and partition by key."""
    dead: list[dict] = []
    outputs: list[pa.Table] = []
    pending_rows = 0
    input_bytes = input_records = 0
    attempts = job.options.bad_record_attempts
    with collecting_counters() as counters:
        for batch, nbytes in _read_split(job, split, dead):
            input_bytes += nbytes
            input_records += batch.table.num_rows
            for mapped in apply_skipping_bad_records(job.map, batch, "map", attempts, dead):
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
        counters["map_input_records"] += input_records + sum(1 for d in dead if d["stage"] == "read")
        counters["map_input_bytes"] += input_bytes
        counters["map_output_records"] += mapped_all.num_rows
        invalid = sum(1 for d in dead if d["stage"] == "read")
        counters["invalid_input_records"] += invalid
        counters["bad_records_skipped"] += len(dead) - invalid
    partitions = hash_partition(mapped_all, job.keys, reducers)
    return MapTaskResult(partitions, counters, dead_letter_table(dead), input_bytes, input_records)


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
    """Merge a partition's map outputs, reduce them, sort by key and commit the part."""
    dead: list[dict] = []
    with collecting_counters() as counters:
        merged = concat(inputs) if inputs else None
        if merged is None or (merged.num_columns == 0):
            merged = job.map(empty_input(job))
            if job.combine is not None:
                merged = job.combine(merged)
        counters["reduce_input_records"] += merged.num_rows
        batch = _Batch(merged, f"partition-{partition}", np.arange(merged.num_rows))
        try:
            reduced_parts = [_call_retrying(job.reduce, merged, job.options.bad_record_attempts)]
        except TransientTaskError:
            raise
        except Exception:
            ordered = sort_by_keys(merged, job.keys)
            batch = _Batch(ordered, f"partition-{partition}", np.arange(ordered.num_rows))
            reduced_parts = apply_skipping_bad_records(job.reduce, batch, "reduce", 1, dead,
                                                       _group_bounds(ordered, job.keys))
        if not reduced_parts:
            reduced_parts = [job.reduce(merged.slice(0, 0))]
        reduced = sort_by_keys(concat(reduced_parts), job.keys)
        counters["reduce_output_records"] += reduced.num_rows
        counters["bad_records_skipped"] += len(dead)
    path = write_part(output_dir, partition, reduced)
    return ReduceTaskResult(path, reduced.num_rows, counters, dead_letter_table(dead))
