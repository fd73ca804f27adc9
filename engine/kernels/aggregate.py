"""Compiled combine and partition steps for (string key, int64 value) tables such as word counts.

- ``sum_by_key(table, key, value)``: one row per distinct key with the sum of its values
  (rows in first-seen order), like ``GroupByAggregate(key, {value: "sum"})`` without the
  generic group-by machinery: keys are hashed with ``hash_binary`` and counted in an
  open-addressing table with an exact byte comparison on every tag match.
- ``partition_by_hash(table, key, partitions)``: the table split into ``partitions`` tables
  by ``hash_binary(key) mod partitions``, rows in their original order inside each, by a
  counting sort (linear) instead of a comparison sort.

A proposal for the engine's shuffle: ``engine.arrow.hash_partition`` uses another hash, so
a job must not mix the two.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from engine.common.tables import arrow_array, int64_array, numpy_view
from engine.kernels._jit import kernel, prefetch
from engine.kernels.hashing import _hash_values, binary_buffers

_TAG = np.uint64(0xFFFFFFFF00000000)
_INDEX = np.uint64(0xFFFFFFFF)
_AHEAD = 16  # rows between prefetching a slot and probing it


@kernel
def _sum_by_hash(data: np.ndarray, offsets: np.ndarray, hashes: np.ndarray, values: np.ndarray) -> tuple:
    """``(first_rows, sums, groups)``: for each distinct key (first-seen order) its first row
    and the sum of its values."""
    rows = hashes.size
    slots = 16
    while slots < 2 * rows:
        slots *= 2
    mask = np.uint64(slots - 1)
    table = np.zeros(slots, dtype=np.uint64)
    first_rows = np.empty(rows, dtype=np.int64)
    sums = np.zeros(rows, dtype=np.int64)
    groups = 0
    for row in range(rows):
        if row + _AHEAD < rows:
            prefetch(table, hashes[row + _AHEAD] & mask)
        h = hashes[row]
        tag = h & _TAG
        slot = h & mask
        start, length = offsets[row], offsets[row + 1] - offsets[row]
        while True:
            held = table[slot]
            if held == 0:
                first_rows[groups] = row
                sums[groups] = values[row]
                groups += 1
                table[slot] = tag | np.uint64(groups)
                break
            if (held & _TAG) == tag:
                group = np.int64(held & _INDEX) - 1
                other = first_rows[group]
                other_start = offsets[other]
                same = offsets[other + 1] - other_start == length
                k = 0
                while same and k < length:
                    same = data[other_start + k] == data[start + k]
                    k += 1
                if same:
                    sums[group] += values[row]
                    break
            slot = (slot + np.uint64(1)) & mask
    return first_rows[:groups], sums[:groups], groups


def sum_by_key(table: pa.Table, key: str = "word", value: str = "count") -> pa.Table:
    """``(key, value)`` with one row per distinct key and the sum of its int64 values, in
    first-seen order.  The key column must be string/binary without nulls."""
    keys = table.column(key)
    keys = keys.combine_chunks() if keys.num_chunks != 1 else keys.chunk(0)
    if keys.null_count:
        raise ValueError(f"sum_by_key: column {key!r} has nulls")
    values = numpy_view(table.column(value)).astype(np.int64, copy=False)
    data, offsets, _ = binary_buffers(keys)
    hashes = _hash_values(data, offsets, np.zeros(0, np.bool_), np.uint64(0))
    first_rows, sums, _ = _sum_by_hash(data, offsets, hashes, values)
    return pa.table({key: keys.take(arrow_array(first_rows)), value: int64_array(sums)})


@kernel
def _counting_order(ids: np.ndarray, partitions: int) -> tuple:
    """``(order, bounds)``: row indexes grouped by id (stable), and where each id's rows begin."""
    bounds = np.zeros(partitions + 1, dtype=np.int64)
    for i in range(ids.size):
        bounds[ids[i] + 1] += 1
    for p in range(partitions):
        bounds[p + 1] += bounds[p]
    fill = bounds[:-1].copy()
    order = np.empty(ids.size, dtype=np.int64)
    for i in range(ids.size):
        order[fill[ids[i]]] = i
        fill[ids[i]] += 1
    return order, bounds


def partition_by_hash(table: pa.Table, key: str, partitions: int) -> list[pa.Table]:
    """``partitions`` tables of the rows with ``hash_binary(key) % partitions`` = 0, 1, ...
    (row order kept inside each).  The key column must be string or binary."""
    from engine.kernels.hashing import hash_binary

    if partitions == 1 or table.num_rows == 0:
        return [table] + [table.slice(0, 0)] * (partitions - 1)
    ids = (hash_binary(table.column(key)) % np.uint64(partitions)).astype(np.int64)
    order, bounds = _counting_order(ids, partitions)
    ordered = table.take(arrow_array(order))
    return [ordered.slice(int(bounds[p]), int(bounds[p + 1] - bounds[p])) for p in range(partitions)]
