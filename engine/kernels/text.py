"""Text kernels with exactly Python's ``str.split()`` semantics: the numpy reference, and
``count_words``, the compiled kernel of ``engine.kernels.wordcount``.

A word is a maximal run of characters for which ``str.isspace()`` is false, and each value
is split on its own, so over valid UTF-8 text ``count_words(values)`` equals
``Counter(w for v in values for w in v.split())``.  ``split_words`` (numpy: one lookup table
for single-byte whitespace, a small check at the lead bytes of multi-byte whitespace such
as U+00A0 or U+3000) and ``count_words_reference`` (``split_words`` + Arrow's
``value_counts``) are kept as the independent reference the compiled kernel is tested
and benchmarked against.  No Python loop runs per line or per word in either.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@lru_cache(maxsize=1)
def _whitespace_tables() -> tuple[np.ndarray, dict[int, list[bytes]]]:
    """Single-byte whitespace lookup table and multi-byte whitespace encodings by lead byte."""
    from engine.kernels.whitespace import whitespace_characters

    single = np.zeros(256, dtype=bool)
    multi: dict[int, list[bytes]] = {}
    for char in whitespace_characters():
        encoded = char.encode("utf-8")
        if len(encoded) == 1:
            single[encoded[0]] = True
        else:
            multi.setdefault(encoded[0], []).append(encoded)
    return single, multi


def whitespace_mask(data: np.ndarray) -> np.ndarray:
    """A boolean mask over UTF-8 bytes: True where the byte belongs to a whitespace character."""
    single, multi = _whitespace_tables()
    mask = single[data]
    if data.size and int(data.max()) >= 0x80:
        padded = np.concatenate([data, np.zeros(4, dtype=np.uint8)])
        for lead, encodings in multi.items():
            positions = np.flatnonzero(data == lead)
            if positions.size == 0:
                continue
            for encoded in encodings:
                hit = np.ones(positions.size, dtype=bool)
                for k in range(1, len(encoded)):
                    hit &= padded[positions + k] == encoded[k]
                starts = positions[hit]
                for k in range(len(encoded)):
                    mask[starts + k] = True
    return mask


def _string_values(array: pa.Array) -> np.ndarray:
    """The bytes of a (large_)string/binary array's values, as one contiguous uint8 view."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if len(array) == 0:
        return np.zeros(0, dtype=np.uint8)
    if array.null_count:
        array = array.drop_null()
    offset_type = np.int64 if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)
    first, last = int(offsets[array.offset]), int(offsets[array.offset + len(array)])
    data = array.buffers()[2]
    if data is None:
        return np.zeros(0, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)[first:last]


def _value_starts(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Where each non-null value starts in ``_string_values(array)``'s bytes."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    if array.null_count:
        array = array.drop_null()
    if len(array) == 0:
        return np.zeros(0, dtype=np.int64)
    large = pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64 if large else np.int32)
    offsets = offsets[array.offset: array.offset + len(array)].astype(np.int64)
    return offsets - offsets[0]


def split_words(text: pa.Array | pa.ChunkedArray) -> pa.Array:
    """All words of all non-null values of a string array, in order, as ``str.split()`` finds
    them in each value (a ``string`` array, or ``large_string`` past 2 GiB of words).

    Each value is split on its own: the end of one value and the start of the next never
    join into one word.
    """
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks != 1 else text.chunk(0)
    if pa.types.is_null(text.type):
        return pa.nulls(0, pa.string())
    data = _string_values(text)
    if data.size == 0:
        return pa.nulls(0, pa.string())
    word_bytes = ~whitespace_mask(data)
    starts_mask = word_bytes.copy()
    starts_mask[1:] &= ~word_bytes[:-1]
    ends_mask = word_bytes.copy()
    ends_mask[:-1] &= ~word_bytes[1:]
    # A value boundary ends the word before it and starts the word after it.
    boundaries = _value_starts(text)
    boundaries = boundaries[(boundaries > 0) & (boundaries < data.size)]
    starts_mask[boundaries] |= word_bytes[boundaries]
    ends_mask[boundaries - 1] |= word_bytes[boundaries - 1]
    starts = np.flatnonzero(starts_mask)
    ends = np.flatnonzero(ends_mask) + 1
    # 32-bit offsets when they fit: Arrow hashes ``string`` a third faster than ``large_string``.
    small = data.size < 2**31 - 1
    offsets = np.zeros(starts.size + 1, dtype=np.int32 if small else np.int64)
    np.cumsum(ends - starts, out=offsets[1:])
    compact = data[word_bytes]
    return pa.Array.from_buffers(pa.string() if small else pa.large_string(), int(starts.size),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(compact)])


def count_words_reference(text: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``count_words`` computed with numpy and Arrow (``split_words`` + ``value_counts``): a
    ``(word: string, count: int64)`` table in first-seen order.  The reference, and the
    path of small inputs while the compiled kernels load."""
    words = split_words(text)
    counts = pc.value_counts(words)
    return pa.table({
        "word": counts.field("values").cast(pa.string()),
        "count": counts.field("counts").cast(pa.int64()),
    })


def count_words(text: pa.Array | pa.ChunkedArray) -> pa.Table:
    """A ``(word: string, count: int64)`` table of the words of each non-null value of ``text``:
    exactly ``Counter(w for v in values for w in v.split())``, rows in first-seen order.

    This is ``engine.kernels.wordcount.count_words`` (compiled), except that an input
    smaller than ``readiness.SMALL_INPUT_BYTES`` goes through ``count_words_reference`` until
    this process has loaded the compiled kernels (``engine.kernels.readiness``): the same
    table, without waiting a second for numba.  Importing the engine does not load numba.
    """
    from engine.kernels.readiness import use_compiled

    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks != 1 else text.chunk(0)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type) or pa.types.is_null(text.type)):
        raise TypeError(f"count_words needs a string or large_string array, got {text.type}")
    if not use_compiled(text.nbytes):
        return count_words_reference(text)
    from engine.kernels.wordcount import count_words as compiled

    return compiled(text)
