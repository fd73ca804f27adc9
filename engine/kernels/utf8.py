"""UTF-8 validation of a byte block, compiled, with exactly Python's verdict and error reasons.

``first_invalid(block)`` is one pass: -1 when ``block.decode("utf-8")`` would succeed, else
the position where it would fail.  ``bad_lines(block)`` returns every line (ending at
``\\n`` inclusive, or at the block's end) that does not decode on its own, with the error's
position and Python's reason, in O(len(block)) for the whole block: each byte is read at
most three times (validated, searched back for its line start, searched forward for its
line end), however many lines are bad.  A line decodes on its own exactly when decoding the
block from that line's start reports no error inside it, because ``\\n`` is never part of a
multi-byte sequence.
"""

from __future__ import annotations

import numpy as np

from engine.kernels._jit import kernel, load_u64

INVALID_START, INVALID_CONTINUATION, UNEXPECTED_END = 0, 1, 2
REASONS = ("invalid start byte", "invalid continuation byte", "unexpected end of data")  # CPython's words
_HIGH_BITS = np.uint64(0x8080808080808080)


@kernel
def _first_error(data: np.ndarray, i: int, end: int) -> tuple:
    """``(position, reason)`` of the first error decoding ``data[i:end]``, or ``(-1, -1)``.

    The checks are CPython's (Objects/stringlib/codecs.h): the position is the sequence's
    lead byte; E0/ED/F0/F4 narrow the second byte's range (no overlongs, surrogates or code
    points past U+10FFFF); a sequence cut by ``end`` whose bytes so far are valid is
    "unexpected end of data".
    """
    while i < end:
        if i + 8 <= end and (load_u64(data, i) & _HIGH_BITS) == 0:  # eight ASCII bytes
            i += 8
            continue
        lead = data[i]
        if lead < 0x80:
            i += 1
            continue
        if lead < 0xC2 or lead > 0xF4:
            return i, INVALID_START
        if lead < 0xE0:
            need, low, high = 1, 0x80, 0xBF
        elif lead < 0xF0:
            need = 2
            low = 0xA0 if lead == 0xE0 else 0x80
            high = 0x9F if lead == 0xED else 0xBF
        else:
            need = 3
            low = 0x90 if lead == 0xF0 else 0x80
            high = 0x8F if lead == 0xF4 else 0xBF
        if i + 1 >= end:
            return i, UNEXPECTED_END
        second = data[i + 1]
        if second < low or second > high:
            return i, INVALID_CONTINUATION
        for k in range(2, need + 1):
            if i + k >= end:
                return i, UNEXPECTED_END
            if (data[i + k] & 0xC0) != 0x80:
                return i, INVALID_CONTINUATION
        i += need + 1
    return -1, -1


@kernel
def _bad_lines(data: np.ndarray) -> tuple:
    """``(starts, ends, positions, reasons)`` arrays of the lines of ``data`` that do not decode."""
    size = data.size
    capacity = 16
    found = np.empty((capacity, 4), dtype=np.int64)
    count = 0
    i = 0  # always a line start
    while i < size:
        position, reason = _first_error(data, i, size)
        if position < 0:
            break
        start = position
        while start > i and data[start - 1] != 0x0A:
            start -= 1
        stop = position
        while stop < size and data[stop] != 0x0A:
            stop += 1
        stop = min(stop + 1, size)
        if count == capacity:
            capacity *= 2
            bigger = np.empty((capacity, 4), dtype=np.int64)
            bigger[:count] = found[:count]
            found = bigger
        found[count, 0], found[count, 1], found[count, 2], found[count, 3] = start, stop, position, reason
        count += 1
        i = stop
    return found[:count, 0].copy(), found[:count, 1].copy(), found[:count, 2].copy(), found[:count, 3].copy()


def _as_bytes_array(block: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """A read-only uint8 view (always read-only, so each kernel compiles once)."""
    data = block.view(np.uint8).reshape(-1) if isinstance(block, np.ndarray) else np.frombuffer(block, dtype=np.uint8)
    if data.flags.writeable:
        data = data.view()
        data.setflags(write=False)
    return data


def first_invalid(block: bytes | bytearray | memoryview | np.ndarray) -> int:
    """-1 if ``block`` is valid UTF-8, else the position where Python's decoder reports the
    first error (``UnicodeDecodeError.start``)."""
    data = _as_bytes_array(block)
    return int(_first_error(data, 0, data.size)[0])


def bad_lines(block: bytes | bytearray | memoryview | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The lines of ``block`` that are not valid UTF-8, in order, as four int64 arrays:
    ``starts``, ``ends`` (exclusive, past the ``\\n``), ``positions`` of the first error in the
    line, and ``reasons`` (indexes into ``REASONS``).  Linear in ``len(block)``."""
    return _bad_lines(_as_bytes_array(block))
