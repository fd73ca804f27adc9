"""Compiled group-by over integer key columns: the fast path of ``GroupByAggregate``.

``group_by_int_keys(table, keys, specs)`` returns what
``table.group_by(keys, use_threads=False).aggregate(specs)`` returns (one row per distinct
key, the keys and a ``<column>_<function>`` column per aggregation) when every key column
is an integer (but uint64), timestamp or duration column without nulls and every aggregation is ``sum``, ``min``,
``max`` or ``count`` over an int64 column, or ``sum`` or ``count`` over a float64 column,
without nulls; otherwise None (the caller uses Arrow's group-by).  Groups come in
first-seen order.

Rows are grouped in one pass through an open-addressing table keyed by a splitmix64 mix
of the key values, with a 32-bit tag per slot and an exact comparison of every key
column on a tag match; aggregates are then folded per group id.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.common.tables import arrow_array, int64_array, int64_like, numpy_view
from engine.kernels._jit import kernel, prefetch

_TAG = np.uint64(0xFFFFFFFF00000000)
_INDEX = np.uint64(0xFFFFFFFF)
_AHEAD = 16  # rows between prefetching a slot and probing it
_MAX_ROWS = 1 << 31  # group numbers must fit the slot's low 32 bits


@kernel
def _mix(h: np.uint64) -> np.uint64:
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@kernel
def _hash_rows(keys: np.ndarray) -> np.ndarray:
    """A uint64 hash per row of the ``(columns, rows)`` int64 key matrix."""
    columns, rows = keys.shape
    hashes = np.empty(rows, dtype=np.uint64)
    for row in range(rows):
        h = np.uint64(0x9E3779B97F4A7C15)
        for column in range(columns):
            h = _mix(h * np.uint64(31) + np.uint64(keys[column, row]))
        hashes[row] = h
    return hashes


@kernel
def _partition_rows(keys: np.ndarray, partitions: int) -> np.ndarray:
    """``engine.common.hashing.partition_ids`` of the int64 key matrix, in one pass: the
    same splitmix64 chain over the same values, so either path sends a key to one place."""
    columns, rows = keys.shape
    out = np.empty(rows, dtype=np.int64)
    for row in range(rows):
        combined = np.uint64(0)
        for column in range(columns):
            combined = _mix(combined * np.uint64(31) + _mix(np.uint64(keys[column, row])))
        out[row] = np.int64(combined % np.uint64(partitions))
    return out


@kernel
def _group_rows(keys: np.ndarray, hashes: np.ndarray) -> tuple:
    """``(group_of_row, first_rows)``: each row's group number (first-seen order) and the
    first row of every group.  The table starts at a quarter of the rows' slots and
    doubles when half full."""
    columns, rows = keys.shape
    slots = 1024
    while slots < rows // 4:
        slots *= 2
    mask = np.uint64(slots - 1)
    table = np.zeros(slots, dtype=np.uint64)
    group_of_row = np.empty(rows, dtype=np.int64)
    first_rows = np.empty(rows, dtype=np.int64)
    groups = 0
    for row in range(rows):
        if row + _AHEAD < rows:
            prefetch(table, hashes[row + _AHEAD] & mask)
        h = hashes[row]
        tag = h & _TAG
        slot = h & mask
        while True:
            held = table[slot]
            if held == 0:
                first_rows[groups] = row
                group_of_row[row] = groups
                groups += 1
                table[slot] = tag | np.uint64(groups)
                break
            if (held & _TAG) == tag:
                group = np.int64(held & _INDEX) - 1
                other = first_rows[group]
                same = True
                for column in range(columns):
                    if keys[column, other] != keys[column, row]:
                        same = False
                        break
                if same:
                    group_of_row[row] = group
                    break
            slot = (slot + np.uint64(1)) & mask
        if 2 * groups > slots:
            slots *= 2
            mask = np.uint64(slots - 1)
            table = np.zeros(slots, dtype=np.uint64)
            for group in range(groups):
                g_hash = hashes[first_rows[group]]
                g_slot = g_hash & mask
                while table[g_slot] != 0:
                    g_slot = (g_slot + np.uint64(1)) & mask
                table[g_slot] = (g_hash & _TAG) | np.uint64(group + 1)
    return group_of_row, first_rows[:groups]


@kernel
def _sums(group_of_row: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    out = np.zeros(groups, dtype=values.dtype)
    for row in range(group_of_row.size):
        out[group_of_row[row]] += values[row]
    return out


@kernel
def _extremes(group_of_row: np.ndarray, values: np.ndarray, first_rows: np.ndarray, largest: bool) -> np.ndarray:
    out = values[first_rows].copy()
    for row in range(group_of_row.size):
        group = group_of_row[row]
        value = values[row]
        if (value > out[group]) if largest else (value < out[group]):
            out[group] = value
    return out


def _key_matrix(table: pa.Table, keys: Sequence[str]) -> np.ndarray | None:
    """The key columns as a C-contiguous ``(columns, rows)`` int64 matrix, or None when one
    is not ``int64_like`` or has nulls."""
    matrix = np.empty((len(keys), table.num_rows), dtype=np.int64)
    for index, name in enumerate(keys):
        column = table.column(name)
        kind = column.type
        if column.null_count or not int64_like(kind):
            return None
        values = column.cast(pa.int64()) if kind != pa.int64() else column
        matrix[index] = numpy_view(values)
    return matrix


def int_key_partitions(table: pa.Table, keys: Sequence[str], partitions: int) -> np.ndarray | None:
    """``hash(key) mod partitions`` per row, as ``engine.common.hashing.partition_ids``
    computes it, when every key column is ``int64_like`` without nulls; else None."""
    matrix = _key_matrix(table, keys)
    return None if matrix is None else _partition_rows(matrix, partitions)


def _fast_aggregation(table: pa.Table, column: str, function: str) -> bool:
    values = table.column(column)
    if values.null_count:
        return False
    if values.type == pa.int64():
        return function in ("sum", "min", "max", "count")
    return values.type == pa.float64() and function in ("sum", "count")


def group_by_int_keys(table: pa.Table, keys: Sequence[str], specs: Sequence[tuple[str, str]]) -> pa.Table | None:
    """Arrow's ``group_by(keys).aggregate(specs)`` computed by the compiled kernels, or None
    when the table is outside the fast path (see the module docstring)."""
    if table.num_rows == 0 or table.num_rows >= _MAX_ROWS:
        return None
    if not all(_fast_aggregation(table, column, function) for column, function in specs):
        return None
    matrix = _key_matrix(table, keys)
    if matrix is None:
        return None
    group_of_row, first_rows = _group_rows(matrix, _hash_rows(matrix))
    groups = first_rows.size
    indices = arrow_array(first_rows)
    columns: dict[str, pa.Array] = {name: pc.take(table.column(name), indices) for name in keys}
    for column, function in specs:
        name = f"{column}_{function}"
        if function == "count":
            columns[name] = int64_array(np.bincount(group_of_row, minlength=groups))
            continue
        values = numpy_view(table.column(column))
        if function == "sum":
            columns[name] = arrow_array(_sums(group_of_row, values, groups))
        else:
            columns[name] = arrow_array(_extremes(group_of_row, values, first_rows, function == "max"))
    return pa.table(columns)
