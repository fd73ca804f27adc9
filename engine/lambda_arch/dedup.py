"""Duplicate detection for the master log: a compact, vectorized index of event ids.

Semantics (the oracle in ``oracle.py`` implements the same rule independently):

    Ingest batches are processed in acknowledgement order.  Before a batch, the
    *watermark* M is the largest ``event_time`` stored so far.  A valid row of the batch
    is a duplicate -- not stored -- when an event with the same ``event_id`` was stored
    earlier (in an earlier batch, or earlier in this batch) with ``event_time >= M - horizon``.

So a re-sent event is dropped while its first copy is within the horizon of the newest
event time seen, and stored again once its first copy has fallen behind the horizon.

Ids are compared by a 128-bit hash (two independent 64-bit polynomial hashes of the
UTF-8 bytes): two distinct ids are confused with probability about n**2 / 2**129 (below
1e-20 for a billion ids).  The index is a few sorted *runs* of (hash, hash, time)
numpy arrays, merged size-tiered like an LSM tree; entries whose time fell below
``M - horizon`` are dropped at merges because they can never match again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

_NO_WATERMARK = np.iinfo(np.int64).min


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))
_MULTIPLY = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


def _finalize(values: np.ndarray) -> np.ndarray:
    values ^= values >> np.uint64(31)
    values *= np.uint64(0xD6E8FEB86659FD93)
    values ^= values >> np.uint64(32)
    return values


def hash_ids(ids: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uint64 hashes per id, over its UTF-8 bytes and length.

    The ids are laid out as rows of a zero-padded byte matrix read as 8-byte words, then
    each lane folds the words with its own multiply-xor mix: a handful of numpy
    operations per batch, whatever the number of ids.  Nulls hash like empty strings.
    """
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks != 1 else ids.chunk(0)
    ids = ids.cast(pa.string()) if not pa.types.is_string(ids.type) else ids
    count = len(ids)
    if count == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32)[ids.offset: ids.offset + count + 1].astype(np.int64)
    lengths = np.diff(offsets)
    if ids.null_count:
        lengths = np.where(np.asarray(ids.is_valid()), lengths, 0)
    data_buffer = ids.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    width = max(8, int(-(-int(lengths.max()) // 8) * 8))
    first_length = int(lengths[0])
    if not ids.null_count and np.all(lengths == first_length) and offsets[-1] - offsets[0] == count * first_length:
        fixed = data[offsets[0]: offsets[-1]].reshape(count, first_length)  # fixed-width ids: no scatter
        matrix = np.zeros((count, width), dtype=np.uint8)
        matrix[:, :first_length] = fixed
    else:
        matrix = np.zeros((count, width), dtype=np.uint8)
        rows = np.repeat(np.arange(count), lengths)
        starts = np.repeat(offsets[:-1], lengths)
        within = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        matrix[rows, within] = data[starts + within]
    words = np.ascontiguousarray(matrix).view(np.uint64)
    lanes = []
    with np.errstate(over="ignore"):
        for lane in range(2):
            value = lengths.astype(np.uint64) * _MULTIPLY[lane] + _MIX[lane]
            for column in range(words.shape[1]):
                value = _finalize((value ^ words[:, column]) * _MULTIPLY[lane] + _MIX[1 - lane])
            lanes.append(value)
    return lanes[0], lanes[1]


@dataclass
class _Run:
    """One sorted run: ``first`` ascending; ``second`` and ``time`` aligned with it."""

    first: np.ndarray
    second: np.ndarray
    time: np.ndarray

    def __len__(self) -> int:
        return len(self.first)


def _make_run(first: np.ndarray, second: np.ndarray, time: np.ndarray, cutoff: int) -> _Run:
    """Sort by hash, drop expired entries, keep one entry (the newest time) per id.

    Inputs that are concatenations of sorted runs sort in linear time (timsort merges runs).
    """
    live = time >= cutoff
    if not live.all():
        first, second, time = first[live], second[live], time[live]
    order = np.argsort(first, kind="stable")
    first, second, time = first[order], second[order], time[order]
    if len(first) > 1:
        starts = np.ones(len(first), dtype=bool)
        starts[1:] = (first[1:] != first[:-1]) | (second[1:] != second[:-1])
        if not starts.all():
            positions = np.flatnonzero(starts)
            time = np.maximum.reduceat(time, positions)
            first, second = first[positions], second[positions]
    return _Run(first, second, time)


class DedupIndex:
    """The ids stored within the horizon; ``duplicates(...)`` then ``add(...)`` per batch."""

    def __init__(self, horizon_ms: int) -> None:
        if horizon_ms < 0:
            raise ValueError(f"dedup horizon must be >= 0 ms, got {horizon_ms}")
        self.horizon_ms = int(horizon_ms)
        self.watermark = _NO_WATERMARK
        self._runs: list[_Run] = []

    @property
    def cutoff(self) -> int:
        """Stored entries older than this event time can no longer make a row a duplicate."""
        if self.watermark == _NO_WATERMARK:
            return _NO_WATERMARK
        return self.watermark - self.horizon_ms

    def entries(self) -> int:
        """Number of (id, time) entries held."""
        return sum(len(run) for run in self._runs)

    def duplicates(self, first: np.ndarray, second: np.ndarray, time: np.ndarray) -> np.ndarray:
        """Boolean mask: which rows of a batch (in row order) are duplicates.  Pure."""
        count = len(first)
        cutoff = self.cutoff
        is_duplicate = np.zeros(count, dtype=bool)
        if count == 0:
            return is_duplicate
        # Within the batch: a later row repeats an earlier row that is within the horizon.
        index = np.arange(count, dtype=np.int64)
        order = np.argsort(first)
        sorted_first, sorted_second = first[order], second[order]
        same_first = sorted_first[1:] == sorted_first[:-1]
        if np.any(same_first & (sorted_second[1:] != sorted_second[:-1])):
            # A 64-bit collision of the first lane inside the batch: sort by both lanes.
            order = np.lexsort((index, second, first))
            sorted_first, sorted_second = first[order], second[order]
            same_first = (sorted_first[1:] == sorted_first[:-1]) & (sorted_second[1:] == sorted_second[:-1])
        starts = np.ones(count, dtype=bool)
        starts[1:] = ~same_first
        start_positions = np.flatnonzero(starts)
        eligible_index = np.where(time[order] >= cutoff, order, count)
        first_eligible = np.minimum.reduceat(eligible_index, start_positions)
        group_sizes = np.diff(np.append(start_positions, count))
        is_duplicate[order] = np.repeat(first_eligible, group_sizes) < order
        # Against earlier batches; querying in hash order keeps the binary searches cache-friendly.
        sorted_duplicate = np.zeros(count, dtype=bool)
        for run in self._runs:
            sorted_duplicate |= self._matches(run, sorted_first, sorted_second, cutoff)
        is_duplicate[order] |= sorted_duplicate
        return is_duplicate

    @staticmethod
    def _matches(run: _Run, first: np.ndarray, second: np.ndarray, cutoff: int) -> np.ndarray:
        if len(run) == 0:
            return np.zeros(len(first), dtype=bool)
        left = np.searchsorted(run.first, first, side="left")
        at = np.minimum(left, len(run) - 1)
        hit = run.first[at] == first
        found = hit & (run.second[at] == second) & (run.time[at] >= cutoff)
        # Several entries share a first hash only on a 64-bit collision: check them all.
        after = np.minimum(at + 1, len(run) - 1)
        for row in np.flatnonzero(hit & (after > at) & (run.first[after] == first)):
            right = int(np.searchsorted(run.first, first[row], side="right"))
            span = slice(int(left[row]), right)
            found[row] = bool(np.any((run.second[span] == second[row]) & (run.time[span] >= cutoff)))
        return found

    def add(self, first: np.ndarray, second: np.ndarray, time: np.ndarray) -> None:
        """Record stored rows and advance the watermark; merges runs size-tiered."""
        if len(first) == 0:
            return
        self.watermark = max(self.watermark, int(time.max()))
        cutoff = self.cutoff
        self._runs.append(_make_run(first, second, time, cutoff))
        while len(self._runs) > 1 and len(self._runs[-2]) <= len(self._runs[-1]):
            newer = self._runs.pop()
            older = self._runs.pop()
            self._runs.append(_make_run(np.concatenate([older.first, newer.first]),
                                        np.concatenate([older.second, newer.second]),
                                        np.concatenate([older.time, newer.time]), cutoff))
        self._runs = [run for run in self._runs if len(run) and run.time.max() >= cutoff]
