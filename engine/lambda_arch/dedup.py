"""Duplicate detection for the master log: an exact, vectorized index of event ids.

Semantics (the oracle in ``jobs/adtech/oracle.py`` and the tests implement the same rule
independently):

    Ingest batches are processed in acknowledgement order.  Before a batch, the
    *watermark* M is the largest ``event_time`` stored so far.  A valid row of the batch
    is a duplicate -- not stored -- when an event with the same ``event_id`` was stored
    earlier (in an earlier batch, or earlier in this batch) with ``event_time >= M - horizon``.
    A null id is never a duplicate.

So a re-sent event is dropped while its first copy is within the horizon of the newest
event time seen, and stored again once its first copy has fallen behind the horizon.

Ids are compared exactly.  The index is a few sorted *runs* of (stable 64-bit hash, time,
id) merged size-tiered like an LSM tree; a lookup binary-searches the hash
(``engine.kernels.hashing.hash_binary`` for string and binary ids, ``engine.common.hashing``
for others), then compares the ids of the entries with that hash, so a hash collision
costs a comparison, never a wrong answer.  Entries whose time fell below
``M - horizon`` can never match again: they are dropped at merges, and every run is
purged of them whenever ``M`` has advanced by an eighth of the horizon since the last
purge.  So the index holds at most one entry per event stored with event time at least
``M - 9/8 * horizon``, and none older: its memory is bounded by the events of the last horizon (and an
eighth) of event time, however long ingest runs.  Within a batch, ids are grouped exactly
by dictionary encoding.

Work and memory are linear in the total bytes of the ids, whatever their lengths: ids are
hashed in slices of at most ``SLICE_BYTES``, and an id longer than that piece by piece
(the hashes of its pieces are hashed again), so hashing needs bounded scratch memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.common.hashing import hash_column

_NO_WATERMARK = np.iinfo(np.int64).min
SLICE_BYTES = 1 << 18


def _normalize(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array; strings and binaries as ``large_binary`` (runs concatenate past 2 GiB)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if pa.types.is_dictionary(ids.type):
        ids = ids.dictionary_decode()
    kind = ids.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind):
        ids = ids.cast(pa.large_binary())
    return ids


def _offsets(values: pa.Array) -> np.ndarray:
    """The int64 value offsets of a ``large_binary`` array (``len + 1`` of them)."""
    return np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset: values.offset + len(values) + 1]


def _hash_long(value: pa.Array) -> np.ndarray:
    """The hash of one long ``large_binary`` value: the hash of its pieces' hashes."""
    start, end = (int(x) for x in _offsets(value))
    cuts = np.append(np.arange(start, end, SLICE_BYTES, dtype=np.int64), np.int64(end))
    pieces = pa.Array.from_buffers(pa.large_binary(), len(cuts) - 1,
                                   [None, pa.py_buffer(cuts.tobytes()), value.buffers()[2]])
    digests = np.concatenate([_hash_bytes(pieces.slice(index, 1)) for index in range(len(pieces))])
    return _hash_bytes(pa.array([digests.tobytes()], pa.large_binary()))


def _hash_bytes(values: pa.Array) -> np.ndarray:
    """The stable hash of each ``large_binary`` value, by the compiled kernel (the numpy
    polynomial hash of ``engine.common.hashing`` costs several array passes per byte)."""
    from engine.kernels.hashing import hash_binary

    return hash_binary(values)


def hash_ids(values: pa.Array) -> np.ndarray:
    """A stable uint64 per id of a normalized id array, hashed in slices of bounded bytes."""
    if len(values) == 0:
        return np.zeros(0, dtype=np.uint64)
    if not pa.types.is_large_binary(values.type):
        return hash_column(values)
    count = len(values)
    offsets = _offsets(values)
    hashes = np.empty(count, dtype=np.uint64)
    start = 0
    while start < count:  # one iteration per SLICE_BYTES of ids (or per longer id)
        end = min(int(np.searchsorted(offsets, offsets[start] + SLICE_BYTES, side="right")) - 1, count)
        if end <= start:
            hashes[start] = _hash_long(values.slice(start, 1))[0]
            end = start + 1
        else:
            hashes[start:end] = _hash_bytes(values.slice(start, end - start))
        start = end
    return hashes


def _subset_order(order: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The stable sort order of the rows where ``mask`` is true, from that of all rows."""
    position = np.cumsum(mask) - 1
    return position[order[mask[order]]]


@dataclass(frozen=True)
class EventIds:
    """The ids of a batch, prepared for the index: normalized values, hashes, validity,
    and (once asked for) the stable order of the hashes."""

    values: pa.Array
    hashes: np.ndarray
    valid: np.ndarray
    _order: list = field(default_factory=list, compare=False, repr=False)

    @staticmethod
    def of(column: pa.Array | pa.ChunkedArray) -> "EventIds":
        """Prepare an id column (any type the stable hash takes; nulls are never duplicates)."""
        values = _normalize(column)
        valid = (np.ones(len(values), dtype=bool) if values.null_count == 0
                 else values.is_valid().to_numpy(zero_copy_only=False))
        return EventIds(values, hash_ids(values), valid)

    def __len__(self) -> int:
        return len(self.values)

    def order(self) -> np.ndarray:
        """Row positions sorted by hash (stable), computed once."""
        if not self._order:
            self._order.append(np.argsort(self.hashes, kind="stable"))
        return self._order[0]

    def take(self, mask: np.ndarray) -> "EventIds":
        """The ids of the rows where ``mask`` is true."""
        if mask.all():
            return self
        order = [_subset_order(self._order[0], mask)] if self._order else []
        return EventIds(self.values.filter(pa.array(mask)), self.hashes[mask], self.valid[mask], order)


@dataclass
class _Run:
    """One sorted run: ``hashes`` ascending; ``time`` and ``ids`` aligned, one entry per id."""

    hashes: np.ndarray
    time: np.ndarray
    ids: pa.Array

    def __len__(self) -> int:
        return len(self.hashes)


def _codes(values: pa.Array) -> np.ndarray:
    """Exact group numbers of the values (equal values, equal numbers); -1 for nulls."""
    encoded = pc.dictionary_encode(values)
    return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _later_copies(codes: np.ndarray, time: np.ndarray, cutoff: int) -> np.ndarray:
    """Rows (in row order) that repeat an earlier row of the same code within the horizon."""
    count = len(codes)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.ones(count, dtype=bool)
    starts[1:] = sorted_codes[1:] != sorted_codes[:-1]
    start_positions = np.flatnonzero(starts)
    eligible_index = np.where(time[order] >= cutoff, order, count)
    first_eligible = np.minimum.reduceat(eligible_index, start_positions)
    later = np.zeros(count, dtype=bool)
    later[order] = np.repeat(first_eligible, np.diff(np.append(start_positions, count))) < order
    return later


def _make_run(hashes: np.ndarray, time: np.ndarray, ids: pa.Array, cutoff: int,
              order: np.ndarray | None = None) -> _Run:
    """Sort by hash (``order``: the sort order, when known), drop expired entries, keep
    one entry (the newest time) per id.

    Inputs that are concatenations of sorted runs sort in linear time (timsort merges runs).
    """
    live = time >= cutoff
    if not live.all():
        order = _subset_order(order, live) if order is not None else None
        hashes, time, ids = hashes[live], time[live], ids.filter(pa.array(live))
    if order is None:
        order = np.argsort(hashes, kind="stable")
    hashes, time, ids = hashes[order], time[order], ids.take(pa.array(order))
    if len(hashes) > 1 and np.any(hashes[1:] == hashes[:-1]):
        # The same id twice, or distinct ids with one hash: group exactly by (hash, id).
        codes = _codes(ids)
        order = np.lexsort((codes, hashes))
        hashes, time, codes = hashes[order], time[order], codes[order]
        starts = np.ones(len(hashes), dtype=bool)
        starts[1:] = (hashes[1:] != hashes[:-1]) | (codes[1:] != codes[:-1])
        positions = np.flatnonzero(starts)
        time = np.maximum.reduceat(time, positions)
        hashes, ids = hashes[positions], ids.take(pa.array(order[positions]))
    return _Run(hashes, time, ids)


class DedupIndex:
    """The ids stored within the horizon; ``duplicates(...)`` then ``add(...)`` per batch."""

    def __init__(self, horizon_ms: int) -> None:
        if horizon_ms < 0:
            raise ValueError(f"dedup horizon must be >= 0 ms, got {horizon_ms}")
        self.horizon_ms = int(horizon_ms)
        self.watermark = _NO_WATERMARK
        self._runs: list[_Run] = []
        self._purged_at = _NO_WATERMARK  # the cutoff of the last purge

    @property
    def cutoff(self) -> int:
        """Stored entries older than this event time can no longer make a row a duplicate."""
        if self.watermark == _NO_WATERMARK:
            return _NO_WATERMARK
        return self.watermark - self.horizon_ms

    def entries(self) -> int:
        """Number of (id, time) entries held."""
        return sum(len(run) for run in self._runs)

    def duplicates(self, ids: EventIds, time: np.ndarray) -> np.ndarray:
        """Boolean mask: which rows of a batch (in row order) are duplicates.  Pure."""
        count = len(ids)
        cutoff = self.cutoff
        is_duplicate = np.zeros(count, dtype=bool)
        if count == 0:
            return is_duplicate
        order = ids.order()
        sorted_hashes = ids.hashes[order]
        # Within the batch: only rows whose hash another row shares can repeat one; their
        # ids are grouped exactly.
        same = sorted_hashes[1:] == sorted_hashes[:-1]
        if same.any():
            shared = np.zeros(count, dtype=bool)
            shared[1:] |= same
            shared[:-1] |= same
            rows = np.sort(order[shared])
            codes = _codes(ids.values.take(pa.array(rows)))
            is_duplicate[rows] = _later_copies(codes, time[rows], cutoff)
        is_duplicate &= ids.valid
        # Against earlier batches; querying in hash order keeps the binary searches cache-friendly.
        found = np.zeros(count, dtype=bool)
        for run in self._runs:
            found |= self._matches(run, ids, order, sorted_hashes, cutoff)
        is_duplicate[order] |= found
        return is_duplicate

    @staticmethod
    def _matches(run: _Run, ids: EventIds, order: np.ndarray, sorted_hashes: np.ndarray, cutoff: int) -> np.ndarray:
        """By hash-sorted position: rows whose id has a live entry in ``run``.  Every entry
        with the row's hash is compared exactly (more than one only on a hash collision)."""
        found = np.zeros(len(sorted_hashes), dtype=bool)
        if len(run) == 0:
            return found
        left = np.searchsorted(run.hashes, sorted_hashes, side="left")
        hit = (run.hashes[np.minimum(left, len(run) - 1)] == sorted_hashes) & ids.valid[order]
        hits = np.flatnonzero(hit)
        if len(hits) == 0:
            return found
        span = np.searchsorted(run.hashes, sorted_hashes[hits], side="right") - left[hits]
        total = int(span.sum())
        rows = np.repeat(hits, span)
        positions = np.repeat(left[hits], span) + np.arange(total) - np.repeat(np.cumsum(span) - span, span)
        live = run.time[positions] >= cutoff
        rows, positions = rows[live], positions[live]
        if len(rows):
            same = pc.equal(ids.values.take(pa.array(order[rows])), run.ids.take(pa.array(positions)))
            found[rows[same.to_numpy(zero_copy_only=False)]] = True
        return found

    def add(self, ids: EventIds, time: np.ndarray) -> None:
        """Record stored rows and advance the watermark; merges runs size-tiered."""
        if len(ids) == 0:
            return
        self.watermark = max(self.watermark, int(time.max()))
        cutoff = self.cutoff
        ids, time = ids.take(ids.valid), time[ids.valid]
        self._runs.append(_make_run(ids.hashes, time, ids.values, cutoff, ids.order()))
        while len(self._runs) > 1 and len(self._runs[-2]) <= len(self._runs[-1]):
            newer = self._runs.pop()
            older = self._runs.pop()
            self._runs.append(_make_run(np.concatenate([older.hashes, newer.hashes]),
                                        np.concatenate([older.time, newer.time]),
                                        pa.concat_arrays([older.ids, newer.ids]), cutoff))
        if cutoff - self._purged_at >= max(1, self.horizon_ms // 8):
            self._purge(cutoff)
        self._runs = [run for run in self._runs if len(run) and run.time.max() >= cutoff]

    def _purge(self, cutoff: int) -> None:
        """Drop every entry older than ``cutoff`` (filtering keeps each run sorted)."""
        purged = []
        for run in self._runs:
            live = run.time >= cutoff
            if not live.all():
                run = _Run(run.hashes[live], run.time[live], run.ids.filter(pa.array(live)))
            purged.append(run)
        self._runs = purged
        self._purged_at = cutoff
