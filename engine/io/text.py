"""Reading a text split as Arrow batches of whole lines, with UTF-8 validation.

Lines keep their terminator (as Python's file iteration yields them), so a batch's
string values are a zero-copy view of the bytes read.  A line that is not valid UTF-8 is
reported as a ``BadLine`` (file, byte offset, reason) and left out of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np
import pyarrow as pa

from engine.io.splits import InputSplit

LINE_COLUMN = "line"
TEXT_COLUMN = "text"  # records="blocks": one value per run of whole lines
_READ_AHEAD = 64 * 1024


@dataclass(frozen=True)
class BadLine:
    """A line that could not be decoded: where it is and why."""

    path: str
    offset: int
    reason: str
    data: bytes


def _line_start_at_or_after(handle: BinaryIO, position: int, size: int) -> int:
    """The first line start >= ``position``: 0, or just past the first newline at >= position-1."""
    if position <= 0:
        return 0
    if position >= size:
        return size
    handle.seek(position - 1)
    scanned = position - 1
    while True:
        chunk = handle.read(_READ_AHEAD)
        if not chunk:
            return size
        found = chunk.find(b"\n")
        if found >= 0:
            return scanned + found + 1
        scanned += len(chunk)


def split_byte_range(handle: BinaryIO, split: InputSplit, size: int) -> tuple[int, int]:
    """The byte range [begin, end) holding exactly the lines that start inside the split."""
    return (_line_start_at_or_after(handle, split.start, size),
            _line_start_at_or_after(handle, split.end, size))


def _lines_array(block: bytes) -> pa.Array:
    """A string array over ``block`` (valid UTF-8), one value per line, terminators kept."""
    data = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(data == 0x0A)
    ends = newlines + 1
    if ends.size == 0 or ends[-1] != len(block):
        ends = np.append(ends, len(block))
    offsets = np.zeros(ends.size + 1, dtype=np.int64)
    offsets[1:] = ends
    return pa.Array.from_buffers(pa.large_string(), int(ends.size),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(block)])


def _find_bad_lines(block: bytes, base_offset: int, path: str) -> tuple[list[tuple[int, int]], list[BadLine]]:
    """Split ``block`` into valid runs and bad lines, decoding only from each error onward."""
    good: list[tuple[int, int]] = []
    bad: list[BadLine] = []
    position = 0
    while position < len(block):
        try:
            block[position:].decode("utf-8")
            good.append((position, len(block)))
            break
        except UnicodeDecodeError as error:
            at = position + error.start
            line_start = block.rfind(b"\n", 0, at) + 1
            line_end = block.find(b"\n", at)
            line_end = len(block) if line_end < 0 else line_end + 1
            if line_start > position:
                good.append((position, line_start))
            bad.append(BadLine(path, base_offset + line_start, f"invalid UTF-8: {error.reason} at byte {at - line_start} of the line",
                               block[line_start:line_end]))
            position = line_end
    return good, bad


def read_text_split(split: InputSplit, batch_size: int,
                    records: str = "lines") -> Iterator[tuple[pa.Table, list[BadLine], int, np.ndarray]]:
    """Yield ``(batch, bad_lines, bytes_read, line_offsets)`` for a text split, batch by batch.

    Each batch holds whole lines only and about ``batch_size`` bytes; ``line_offsets``
    gives each kept line's byte offset in the file.
    """
    if records != "lines":
        raise NotImplementedError(f"text records {records!r} are not readable yet")
    with open(split.path, "rb") as handle:
        size = handle.seek(0, 2)
        begin, end = split_byte_range(handle, split, size)
        position = begin
        while position < end:
            handle.seek(position)
            want = min(batch_size, end - position)
            block = handle.read(want)
            if position + len(block) < end:
                cut = block.rfind(b"\n")
                if cut >= 0:
                    block = block[: cut + 1]
                else:  # one line longer than a batch: read on to its end
                    rest = handle.read(end - position - len(block))
                    newline = rest.find(b"\n")
                    block += rest if newline < 0 else rest[: newline + 1]
            yield _decode_block(block, position, split.path)
            position += len(block)


def _line_starts(lines: pa.Array) -> np.ndarray:
    return np.frombuffer(lines.buffers()[1], dtype=np.int64)[: len(lines)]


def _decode_block(block: bytes, offset: int, path: str) -> tuple[pa.Table, list[BadLine], int, np.ndarray]:
    data = np.frombuffer(block, dtype=np.uint8)
    valid = data.size == 0 or int(data.max()) < 0x80
    if not valid:
        try:
            block.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            pass
    if valid:
        lines = _lines_array(block)
        return pa.table({LINE_COLUMN: lines}), [], len(block), _line_starts(lines) + offset
    good, bad = _find_bad_lines(block, offset, path)
    arrays, starts = [], []
    for a, b in good:
        if b > a:
            piece = _lines_array(block[a:b])
            arrays.append(piece)
            starts.append(_line_starts(piece) + offset + a)
    if not arrays:
        empty = pa.array([], pa.large_string())
        return pa.table({LINE_COLUMN: empty}), bad, len(block), np.zeros(0, dtype=np.int64)
    lines = pa.chunked_array(arrays, type=pa.large_string()).combine_chunks()
    return pa.table({LINE_COLUMN: lines}), bad, len(block), np.concatenate(starts)
