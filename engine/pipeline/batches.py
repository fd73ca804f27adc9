"""Pure per-batch Arrow helpers for the pipeline: normalizing, stable key hashing, splitting.

Nothing here knows about stages, pipes or Ray.  The key hash is computed with numpy over
Arrow buffers, identically in every process (never Python's salted ``hash()``), so a
key's rows go to the same replica wherever the split happens.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def as_table(batch: object, where: str) -> pa.Table:
    """Return ``batch`` as a ``pa.Table``; a RecordBatch is wrapped, anything else is refused.

    ``where`` names the producer (a stage id, a source) for the error message.
    """
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    raise TypeError(
        f"{where} produced {type(batch).__name__}; a filter must return a pyarrow Table or RecordBatch"
    )


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer over uint64 values (wrapping arithmetic), vectorized."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _hash_binary(array: pa.Array) -> np.ndarray:
    """Hash every value of a (large_)string/binary array from its offsets and data buffers."""
    array = array.cast(pa.large_binary()) if not pa.types.is_large_binary(array.type) else array
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64, count=n + 1, offset=array.offset * 8)
    data_buffer = array.buffers()[2]
    start, end = int(offsets[0]), int(offsets[-1])
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)[start:end].astype(np.uint64)
        if data_buffer is not None and end > start
        else np.zeros(0, dtype=np.uint64)
    )
    lengths = np.diff(offsets)
    if data.size == 0:
        return _splitmix64(lengths.astype(np.uint64))
    # Each byte is weighted by a pseudo-random function of its position inside its value,
    # then the weighted bytes of a value are summed: order-sensitive and vectorized.
    row_of_byte = np.repeat(np.arange(n), lengths)
    position = np.arange(data.size, dtype=np.int64) - (offsets[:-1] - start)[row_of_byte]
    with np.errstate(over="ignore"):
        weighted = data * (_splitmix64(position.astype(np.uint64)) | np.uint64(1))
    sums = np.zeros(n, dtype=np.uint64)
    non_empty = lengths > 0
    if non_empty.any():
        sums[non_empty] = np.add.reduceat(weighted, (offsets[:-1] - start)[non_empty])
    with np.errstate(over="ignore"):
        return _splitmix64(sums ^ (lengths.astype(np.uint64) * np.uint64(0x100000001B3)))


def hash_column(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A stable 64-bit hash per value of an Arrow column (nulls hash to 0).

    Integers, booleans, dates/timestamps and floats hash their 64-bit value; strings and
    binaries hash their bytes; any other type is hashed through its string form.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        hashed = _hash_binary(column)
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_temporal(kind):
        if pa.types.is_temporal(kind):
            column = column.view(pa.int64() if kind.bit_width == 64 else pa.int32())
        values = column.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        hashed = _splitmix64(values.astype(np.int64).view(np.uint64))
    elif pa.types.is_floating(kind):
        values = column.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        hashed = _splitmix64((values + 0.0).view(np.uint64))  # +0.0 folds -0.0 into 0.0
    else:
        hashed = _hash_binary(pc.cast(column, pa.string()))
    if column.null_count:
        hashed = np.where(column.is_null().to_numpy(zero_copy_only=False), np.uint64(0), hashed)
    return hashed


def key_partitions(table: pa.Table, key: str, parts: int) -> np.ndarray:
    """The partition (``hash(key) mod parts``) of every row of ``table``."""
    if key not in table.column_names:
        raise KeyError(f"key column {key!r} is not in the batch (columns: {table.column_names})")
    return (hash_column(table.column(key)) % np.uint64(parts)).astype(np.int64)


def split_by_key(table: pa.Table, key: str, parts: int) -> list[pa.Table]:
    """Split ``table`` into ``parts`` tables by key partition, keeping row order inside each."""
    if parts == 1:
        return [table]
    partition = key_partitions(table, key, parts)
    order = np.argsort(partition, kind="stable")
    counts = np.bincount(partition, minlength=parts)
    ordered = table.take(pa.array(order)) if table.num_rows else table
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [ordered.slice(int(bounds[i]), int(counts[i])) for i in range(parts)]


def concat(tables: list[pa.Table]) -> pa.Table | None:
    """Concatenate tables of one schema (None for an empty list); schemas are unified."""
    if not tables:
        return None
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default")
