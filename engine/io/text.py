"""Reading a text split as Arrow batches of whole lines or whole-line blocks, with UTF-8 validation.

A split owns the lines that *start* in its byte range (Hadoop's rule).  It is read a
block of about ``batch_size`` bytes at a time, cut after its last newline.  Each block is
validated in one compiled pass (``engine.kernels.utf8``; a small block, while the process
is still loading its compiled kernels, by Python's decoder); a valid block becomes, with no
copy of its bytes,

- ``records="lines"``: a ``line`` column, one value per line with its terminator kept
  (as Python's file iteration yields lines);
- ``records="blocks"``: a ``text`` column with one value, the whole block.

A line longer than both a batch and ``max_line_bytes`` is never held in memory: it is scanned past in
small chunks and reported as a ``BadLine`` carrying its first ``PREVIEW_BYTES`` bytes
(Hadoop's ``linerecordreader.line.maxlength`` rule).

Only a block that fails is examined line by line, in time linear in the block: each line
that is not valid UTF-8 is reported as a ``BadLine`` (file, byte offset, reason, bytes)
and left out, and the valid runs between bad lines are copied into one buffer (one value
per run for ``"blocks"``).  Values never straddle a bad line, so no word joins across one.
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
PREVIEW_BYTES = 1024  # of a line too long to keep, in its dead letter
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
RECORDS = ("lines", "blocks")


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
    return size if position >= size else _line_end(handle, position - 1, size)


def split_byte_range(handle: BinaryIO, split: InputSplit, size: int) -> tuple[int, int]:
    """The byte range [begin, end) holding exactly the lines that start inside the split."""
    return (_line_start_at_or_after(handle, split.start, size),
            _line_start_at_or_after(handle, split.end, size))


def _line_end(handle: BinaryIO, position: int, end: int) -> int:
    """Just past the first newline at or after ``position`` (or ``end``), read in small chunks."""
    handle.seek(position)
    while position < end:
        chunk = handle.read(min(_READ_AHEAD, end - position))
        if not chunk:
            return end
        found = chunk.find(b"\n")
        if found >= 0:
            return position + found + 1
        position += len(chunk)
    return end


def _too_long(path: str, offset: int, length: int, preview: bytes, limit: int,
              records: str) -> tuple[pa.Table, list[BadLine], int, np.ndarray]:
    bad = BadLine(path, offset, f"line of {length} bytes is longer than max_line_bytes ({limit}); "
                                f"its first {len(preview)} bytes are kept", preview)
    return pa.table({_column(records): pa.array([], pa.large_string())}), [bad], length, np.zeros(0, np.int64)


def read_text_split(split: InputSplit, batch_size: int, records: str = "lines",
                    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
                    ) -> Iterator[tuple[pa.Table, list[BadLine], int, np.ndarray]]:
    """Yield ``(batch, bad_lines, bytes_read, row_offsets)`` for a text split, block by block.

    Each batch covers whole lines only, about ``batch_size`` bytes (more when one line is
    longer, up to ``max_line_bytes``; a line longer than both is skipped as a bad line); ``bytes_read``
    is the block's size and ``row_offsets`` the file byte offset of each value of the batch
    (a line, or a run of lines for ``records="blocks"``).
    """
    if records not in RECORDS:
        raise ValueError(f"text records must be one of {RECORDS}, got {records!r}")
    with open(split.path, "rb") as handle:
        size = handle.seek(0, 2)
        begin, end = split_byte_range(handle, split, size)
        position = begin
        while position < end:
            handle.seek(position)
            block = handle.read(min(batch_size, end - position))
            length = len(block)
            if position + length < end:
                cut = block.rfind(b"\n")
                if cut >= 0:
                    length = cut + 1
                else:  # one line longer than a batch: find its end first, then read it if allowed
                    line_end = _line_end(handle, position + len(block), end)
                    if line_end - position > max_line_bytes:
                        handle.seek(position)
                        preview = handle.read(min(PREVIEW_BYTES, line_end - position))
                        yield _too_long(split.path, position, line_end - position, preview, max_line_bytes, records)
                        position = line_end
                        continue
                    handle.seek(position + len(block))
                    block += handle.read(line_end - position - len(block))
                    length = len(block)
            yield decode_block(memoryview(block)[:length], position, split.path, records)
            position += length


def _valid_utf8(block: memoryview, data: np.ndarray) -> bool:
    """Whether the block decodes as UTF-8: one compiled pass, or (for a small block while
    this process is still loading the compiled kernels) Python's own decoder, whose verdict
    the compiled pass reproduces exactly."""
    from engine.kernels.readiness import use_compiled

    if use_compiled(len(block)):
        from engine.kernels.utf8 import first_invalid

        return first_invalid(data) < 0
    try:
        str(block, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_block(block: memoryview, offset: int, path: str,
                 records: str) -> tuple[pa.Table, list[BadLine], int, np.ndarray]:
    """One block of whole lines (starting at file byte ``offset``) as ``read_text_split`` yields it."""
    data = np.frombuffer(block, dtype=np.uint8)
    if _valid_utf8(block, data):
        runs = np.zeros(1, dtype=np.int64)
        table, row_offsets = _batch(pa.py_buffer(block), data, runs, runs + offset, records)
        return table, [], len(block), row_offsets
    from engine.kernels.utf8 import REASONS, bad_lines  # loads numba on first use only

    starts, ends, positions, reasons = bad_lines(data)
    bad = [BadLine(path, offset + int(a), f"invalid UTF-8: {REASONS[int(r)]} at byte {int(p - a)} of the line",
                   bytes(block[int(a):int(b)])) for a, b, p, r in zip(starts, ends, positions, reasons)]
    # The valid runs lie between bad lines; copy them next to each other.
    run_starts = np.concatenate([[0], ends])
    run_ends = np.concatenate([starts, [len(block)]])
    keep = run_ends > run_starts
    run_starts, run_ends = run_starts[keep], run_ends[keep]
    lengths = run_ends - run_starts
    inside = np.zeros(len(block) + 1, dtype=np.int64)
    np.add.at(inside, run_starts, 1)
    np.add.at(inside, run_ends, -1)
    compact = data[np.cumsum(inside[:-1]) > 0]
    packed_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    table, row_offsets = _batch(pa.py_buffer(compact), compact, packed_starts, run_starts + offset, records)
    return table, bad, len(block), row_offsets


def _column(records: str) -> str:
    return TEXT_COLUMN if records == "blocks" else LINE_COLUMN


def _value_ends(data: np.ndarray, run_starts: np.ndarray, records: str) -> np.ndarray:
    """End of each value in ``data``: each run's end (blocks) or each line's end (lines)."""
    if data.size == 0:
        return np.zeros(0, dtype=np.int64)
    if records == "blocks":
        return np.append(run_starts[1:], data.size).astype(np.int64)
    ends = np.flatnonzero(data == 0x0A).astype(np.int64) + 1
    if ends.size == 0 or ends[-1] != data.size:
        ends = np.append(ends, data.size)
    return ends


def _batch(buffer: pa.Buffer, data: np.ndarray, run_starts: np.ndarray,
           run_offsets: np.ndarray, records: str) -> tuple[pa.Table, np.ndarray]:
    """A one-column ``large_string`` table whose values are views of ``buffer`` (no copy), and
    each value's file byte offset (runs map ``data`` positions back to the file)."""
    ends = _value_ends(data, run_starts, records)
    offsets = np.zeros(ends.size + 1, dtype=np.int64)
    offsets[1:] = ends
    values = pa.Array.from_buffers(pa.large_string(), int(ends.size), [None, pa.py_buffer(offsets), buffer])
    starts = offsets[:-1]
    run = np.searchsorted(run_starts, starts, side="right") - 1
    return pa.table({_column(records): values}), run_offsets[run] + (starts - run_starts[run])
