"""The engine's one stable hash: key columns to uint64, and hash partitioning by key.

``hash_partition`` computes ``hash(key) mod R`` vectorized and identically in every
process (never Python's salted ``hash()``): integers go through the splitmix64
finalizer, strings and binaries through a polynomial hash over their UTF-8 bytes computed
with prefix sums, so each row costs a few numpy operations, not a Python call.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.common.tables import int64_array, numpy_view

_COUNTING_SORT_ROWS = 100_000  # below this numpy's sort is as fast, and no kernel is loaded
_MULTIPLIER = np.uint64(0x100000001B3)  # odd, so it has an inverse modulo 2**64
_INVERSE = np.uint64(pow(0x100000001B3, -1, 2**64))


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: a fast, well-mixing bijection on uint64."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64, copy=True)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def _powers(base: np.uint64, count: int) -> np.ndarray:
    """``base ** i mod 2**64`` for i in 0..count-1 (wrapping uint64 arithmetic)."""
    out = np.empty(count, dtype=np.uint64)
    if count == 0:
        return out
    out[0] = 1
    with np.errstate(over="ignore"):
        # Doubling: out[k:2k] = out[0:k] * base**k keeps this to O(log n) numpy calls.
        filled = 1
        while filled < count:
            take = min(filled, count - filled)
            out[filled:filled + take] = out[:take] * (out[filled - 1] * base)
            filled += take
    return out


def _hash_binary(array: pa.Array) -> np.ndarray:
    """Polynomial hash of each value's bytes, mixed with its length."""
    if pa.types.is_string(array.type) or pa.types.is_binary(array.type):
        offset_type = np.int32
    else:
        offset_type = np.int64
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)[array.offset: array.offset + n + 1]
    offsets = offsets.astype(np.int64)
    data_buffer = array.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    base = int(offsets[0]) if n else 0
    data = data[base: int(offsets[-1])] if n else data[:0]
    rel = offsets - base
    with np.errstate(over="ignore"):
        weighted = (data.astype(np.uint64) + np.uint64(1)) * _powers(_MULTIPLIER, data.size)
        prefix = np.zeros(data.size + 1, dtype=np.uint64)
        np.cumsum(weighted, out=prefix[1:])
        sums = prefix[rel[1:]] - prefix[rel[:-1]]
        normalized = sums * _powers(_INVERSE, data.size + 1)[rel[:-1]]
        lengths = (rel[1:] - rel[:-1]).astype(np.uint64)
        return _splitmix64(normalized ^ _splitmix64(lengths))


def hash_column(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A stable uint64 hash per row of one key column (nulls hash to a fixed value)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.dictionary_decode()
        kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        hashed = _hash_binary(column)
    elif pa.types.is_integer(kind) or pa.types.is_temporal(kind) or pa.types.is_boolean(kind):
        values = pc.cast(column, pa.int64())
        values = numpy_view(values) if not values.null_count else values.fill_null(0).to_numpy(zero_copy_only=False)
        hashed = _splitmix64(values.view(np.uint64))
    elif pa.types.is_floating(kind):
        values = pc.cast(column, pa.float64())
        values = numpy_view(values) if not values.null_count else values.fill_null(0.0).to_numpy(zero_copy_only=False)
        values = np.where(values == 0.0, 0.0, values)  # -0.0 and 0.0 are one key
        hashed = _splitmix64(values.view(np.uint64))
    elif pa.types.is_nested(kind) or pa.types.is_null(kind):
        raise TypeError(f"cannot partition on a key column of type {kind}")
    else:  # decimals and other scalars: through their canonical string form
        hashed = _hash_binary(pc.cast(column, pa.string()))
    if column.null_count:
        valid = np.asarray(column.is_valid())
        hashed = np.where(valid, hashed, np.uint64(0x9E3779B97F4A7C15))
    return hashed


def partition_ids(table: pa.Table, keys: Sequence[str], partitions: int) -> np.ndarray:
    """``hash(key) mod partitions`` per row, combining several key columns."""
    if table.num_rows >= _COUNTING_SORT_ROWS:  # integer keys: the same hash in one compiled pass
        from engine.kernels.int_groupby import int_key_partitions

        ids = int_key_partitions(table, keys, partitions)
        if ids is not None:
            return ids
    combined = np.zeros(table.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for name in keys:
            combined = _splitmix64(combined * np.uint64(31) + hash_column(table.column(name)))
    return (combined % np.uint64(partitions)).astype(np.int64)


def hash_partition(table: pa.Table, keys: Sequence[str], partitions: int) -> list[pa.Table]:
    """Split ``table`` into ``partitions`` tables by stable key hash (row order kept within each)."""
    if partitions == 1:
        return [table]
    if table.num_rows == 0:
        return [table.slice(0, 0) for _ in range(partitions)]
    ids = partition_ids(table, keys, partitions)
    if table.num_rows >= _COUNTING_SORT_ROWS:  # linear, where a comparison sort costs the most
        from engine.kernels.aggregate import _counting_order

        order, bounds = _counting_order(ids, partitions)
    else:
        order = np.argsort(ids, kind="stable")
        bounds = np.searchsorted(ids[order], np.arange(partitions + 1))
    ordered = table.take(int64_array(order))
    return [ordered.slice(int(bounds[p]), int(bounds[p + 1] - bounds[p])) for p in range(partitions)]
