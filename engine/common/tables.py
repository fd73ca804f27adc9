"""Small Arrow table helpers shared by every pattern: numpy views, normalizing, concatenating
(sorting by integer keys is ``engine.common.packed_keys``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa


def int64_array(values: np.ndarray) -> pa.Array:
    """An Arrow int64 array over ``values``' memory (no copy once contiguous int64).  Unlike
    ``pa.array``, it never imports pandas: pyarrow's conversion checks for pandas types,
    importing pandas on first use (0.4 s in each worker process)."""
    return arrow_array(np.asarray(values, dtype=np.int64))


def arrow_array(values: np.ndarray) -> pa.Array:
    """An Arrow array over a 1-d numeric numpy array's memory (copied only if it is not
    contiguous), without pandas (see ``int64_array``).  Booleans are packed into a bitmap."""
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])


def numpy_view(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``array.to_numpy()`` for an integer or floating array without nulls, as a zero-copy
    read-only view of its buffer (one copy when chunked), without importing pandas (Arrow's
    ``to_numpy`` imports it on first use: 0.4-0.8 s per process).  Other arrays go through
    ``to_numpy(zero_copy_only=False)``."""
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks == 1:
            array = array.chunk(0)
        elif array.num_chunks == 0 or not _plain_numbers(array.type) or array.null_count:
            return array.to_numpy()
        else:
            return np.concatenate([numpy_view(chunk) for chunk in array.chunks])
    kind = array.type
    if not _plain_numbers(kind) or array.null_count:
        return array.to_numpy(zero_copy_only=False)
    dtype = np.dtype(("i" if pa.types.is_signed_integer(kind) else "u" if pa.types.is_integer(kind) else "f")
                     + str(kind.bit_width // 8))
    data = array.buffers()[1]
    if data is None:
        return np.zeros(0, dtype)
    return np.frombuffer(data, dtype)[array.offset: array.offset + len(array)]


def _plain_numbers(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or (pa.types.is_floating(kind) and kind != pa.float16())


def valid_mask(array: pa.Array) -> np.ndarray:
    """A bool per row of ``array``: False where it is null.  Unpacks the validity bitmap with
    numpy: converting Arrow arrays (``to_numpy``, ``np.asarray``) imports pandas on first use."""
    rows = len(array)
    bitmap = array.buffers()[0]
    if bitmap is None or array.null_count == 0:
        return np.ones(rows, np.bool_) if array.null_count == 0 else np.zeros(rows, np.bool_)
    bits = np.unpackbits(np.frombuffer(bitmap, np.uint8), bitorder="little")
    return bits[array.offset: array.offset + rows].astype(np.bool_)


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
