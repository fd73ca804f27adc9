"""Small Arrow table helpers shared by every pattern: normalizing, concatenating, sorting."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa


def int64_array(values: np.ndarray) -> pa.Array:
    """An Arrow int64 array over ``values``' memory (no copy once contiguous int64).  Unlike
    ``pa.array``, it never imports pandas: pyarrow's conversion checks for pandas types,
    importing pandas on first use (0.4 s in each worker process)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def int64_like(kind: pa.DataType) -> bool:
    """Integer types but uint64, timestamps and durations: what casts to int64 losslessly."""
    return (pa.types.is_integer(kind) and kind != pa.uint64()) or pa.types.is_timestamp(kind) \
        or pa.types.is_duration(kind)


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


def concat(tables: Sequence[pa.Table], schema: pa.Schema | None = None) -> pa.Table:
    """Concatenate tables, unifying schemas; an empty list gives an empty table of ``schema``."""
    tables = [t for t in tables if t is not None]
    if not tables:
        if schema is None:
            return pa.table({})
        return schema.empty_table()
    return pa.concat_tables(tables, promote_options="permissive")


_PACKED_SORT_ROWS = 100_000  # below this Arrow's sort is as fast


def sort_by_keys(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Rows ordered by ``keys`` ascending (nulls last); equal keys keep their order."""
    if table.num_rows <= 1:
        return table
    if table.num_rows >= _PACKED_SORT_ROWS:
        order = _packed_order(table, keys)
        if order is not None:
            return table.take(int64_array(order))
    return table.sort_by([(k, "ascending") for k in keys])


def _packed_order(table: pa.Table, keys: Sequence[str]) -> np.ndarray | None:
    """The stable ascending order of integer key columns without nulls whose value ranges
    fit in 63 bits together, by one numpy sort of the keys packed into one int64 (faster
    than a sort over several columns); None for other keys."""
    packed = _packed_keys(table, keys)
    return None if packed is None else np.argsort(packed, kind="stable")


def distinct_by_keys(table: pa.Table, keys: Sequence[str]) -> pa.Table | None:
    """The distinct rows of the key columns, ascending, by one sort of the packed keys
    (integer keys without nulls fitting in 63 bits together, as ``_packed_order``); None
    for other keys.  A hash group-by followed by the sort a reduce needs anyway costs
    about twice as much."""
    packed = _packed_keys(table, keys)
    if packed is None:
        return None
    order = np.argsort(packed, kind="stable")
    ordered = packed[order]
    first = np.ones(ordered.size, dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return table.select(list(keys)).take(int64_array(order[first]))


def _packed_keys(table: pa.Table, keys: Sequence[str]) -> np.ndarray | None:
    packed = np.zeros(table.num_rows, dtype=np.int64)
    bits = 0
    for name in keys:
        column = table.column(name)
        kind = column.type
        if column.null_count or not int64_like(kind):
            return None
        values = (column.cast(pa.int64()) if kind != pa.int64() else column).to_numpy()
        low, high = int(values.min()), int(values.max())
        width = (high - low).bit_length()
        bits += width
        if bits > 63:
            return None
        packed = (packed << width) | (values - low)
    return packed
