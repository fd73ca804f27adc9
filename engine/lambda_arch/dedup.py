"""Duplicate detection for the master log: an exact, compiled index of event ids.

Semantics (the oracle in ``jobs/adtech/oracle.py`` and the tests implement the same rule
independently):

    Ingest batches are processed in acknowledgement order.  Before a batch, the
    *watermark* M is the largest ``event_time`` stored so far.  A valid row of the batch
    is a duplicate -- not stored -- when an event with the same ``event_id`` was stored
    earlier (in an earlier batch, or earlier in this batch) with ``event_time >= M - horizon``.
    A null id is never a duplicate.

So a re-sent event is dropped while its first copy is within the horizon of the newest
event time seen, and stored again once its first copy has fallen behind the horizon.

Ids are compared exactly, as bytes: strings and binaries as themselves, integers,
booleans and times as their int64 value, floats as their float64 value (-0.0 equal to
0.0, every NaN equal to every NaN), other types by their string form.  The index is an
open-addressing hash set compiled with numba (``engine.kernels.idset``): one entry per
id, holding the newest time stored for it; a lookup compares the bytes of every entry
whose 32-bit hash tag equals the row's (``engine.kernels.hashing.hash_binary``), so a
hash collision costs a comparison, never a wrong answer.  Entries whose time fell below ``M - horizon`` can
never match again.  Each time ``M`` has advanced by an eighth of the horizon the set
counts them, and once they are half its entries it is rebuilt without them (a rebuild
copies every live entry: waiting for half makes that at most one copy per expired entry);
it is also rebuilt without them whenever it must grow.  So it holds at most one entry per
id, and at most twice as many entries as events stored with event time at least
``M - 9/8 * horizon``: its memory is bounded by the events of the last horizon (and an
eighth) of event time, however long ingest runs.

Work and memory are linear in the total bytes of the ids, whatever their lengths: ids are
hashed in slices of at most ``SLICE_BYTES``, and an id longer than that piece by piece
(the hashes of its pieces are hashed again), so hashing needs bounded scratch memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NO_WATERMARK = np.iinfo(np.int64).min
SLICE_BYTES = 1 << 18
_MIN_ENTRIES = 1024


def _idset() -> ModuleType:
    """The compiled kernels, imported on first use (``import engine`` does not load numba)."""
    from engine.kernels import idset

    return idset


def _normalize(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One ``large_binary`` array of the ids' bytes (see the module docstring)."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if pa.types.is_dictionary(ids.type):
        ids = ids.dictionary_decode()
    kind = ids.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind) \
            or pa.types.is_large_binary(kind):
        return ids.cast(pa.large_binary())
    if pa.types.is_integer(kind) or pa.types.is_temporal(kind) or pa.types.is_boolean(kind):
        values = pc.cast(ids, pa.int64()).to_numpy(zero_copy_only=False) if ids.null_count == 0 \
            else pc.cast(ids, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    elif pa.types.is_floating(kind):
        values = pc.cast(ids, pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        values = np.where(np.isnan(values), np.nan, np.where(values == 0.0, 0.0, values))
    elif pa.types.is_nested(kind) or pa.types.is_null(kind):
        raise TypeError(f"cannot de-duplicate on an id column of type {kind}")
    else:
        return pc.cast(pc.cast(ids, pa.string()), pa.large_binary())
    data = np.ascontiguousarray(values).view(np.uint8)
    offsets = np.arange(len(ids) + 1, dtype=np.int64) * 8
    validity = pc.is_valid(ids).buffers()[1] if ids.null_count else None
    return pa.Array.from_buffers(pa.large_binary(), len(ids), [validity, pa.py_buffer(offsets), pa.py_buffer(data)],
                                 null_count=ids.null_count)


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


@dataclass(frozen=True)
class EventIds:
    """The ids of a batch, prepared for the index: normalized values (``large_binary``),
    hashes and validity."""

    values: pa.Array
    hashes: np.ndarray
    valid: np.ndarray

    @staticmethod
    def of(column: pa.Array | pa.ChunkedArray) -> "EventIds":
        """Prepare an id column (any type the module docstring lists; nulls are never duplicates)."""
        values = _normalize(column)
        valid = (np.ones(len(values), dtype=bool) if values.null_count == 0
                 else values.is_valid().to_numpy(zero_copy_only=False))
        return EventIds(values, hash_ids(values), valid)

    def __len__(self) -> int:
        return len(self.values)

    def take(self, mask: np.ndarray) -> "EventIds":
        """The ids of the rows where ``mask`` is true."""
        if mask.all():
            return self
        return EventIds(self.values.filter(pa.array(mask)), self.hashes[mask], self.valid[mask])

    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """(int64 offsets, uint8 bytes) of the values, as the kernels take them."""
        data = self.values.buffers()[2]
        return _offsets(self.values), (np.frombuffer(data, dtype=np.uint8) if data is not None
                                       else np.zeros(0, dtype=np.uint8))


class DedupIndex:
    """The ids stored within the horizon; ``duplicates(...)`` then ``add(...)`` per batch."""

    def __init__(self, horizon_ms: int) -> None:
        if horizon_ms < 0:
            raise ValueError(f"dedup horizon must be >= 0 ms, got {horizon_ms}")
        self.horizon_ms = int(horizon_ms)
        self.watermark = _NO_WATERMARK
        self._purged_at = _NO_WATERMARK  # the cutoff of the last check for expired entries
        self._count = 0  # entries
        self._used = 0  # arena bytes
        self._allocate(_MIN_ENTRIES, 0)

    def _allocate(self, entries: int, arena_bytes: int) -> None:
        slots = _MIN_ENTRIES * 2
        while slots < 2 * entries:
            slots *= 2
        if entries >= 2**32 - 1 or slots > 2**32:  # entry numbers and tags share a 64-bit slot
            raise MemoryError(f"the dedup index cannot hold {entries:,} ids (at most 2**31)")
        self._slots = np.zeros(slots, dtype=np.uint64)  # engine.kernels.idset.EMPTY is 0
        self._times = np.zeros(entries, dtype=np.int64)
        self._starts = np.zeros(entries, dtype=np.int64)
        self._lengths = np.zeros(entries, dtype=np.uint32)
        self._arena = np.zeros(max(arena_bytes, 1), dtype=np.uint8)

    @property
    def cutoff(self) -> int:
        """Stored entries older than this event time can no longer make a row a duplicate."""
        if self.watermark == _NO_WATERMARK:
            return _NO_WATERMARK
        return self.watermark - self.horizon_ms

    def entries(self) -> int:
        """Number of (id, time) entries held."""
        return self._count

    def _state(self) -> tuple[np.ndarray, ...]:
        return self._slots, self._times, self._starts, self._lengths, self._arena

    def duplicates(self, ids: EventIds, time: np.ndarray) -> np.ndarray:
        """Boolean mask: which rows of a batch (in row order) are duplicates.  Pure."""
        if len(ids) == 0:
            return np.zeros(0, dtype=bool)
        offsets, data = ids.buffers()
        return _idset().find_duplicates(*self._state(), ids.hashes, offsets, data, ids.valid,
                                     np.ascontiguousarray(time, dtype=np.int64), self.cutoff)

    def add(self, ids: EventIds, time: np.ndarray) -> None:
        """Record stored rows and advance the watermark; rows older than the new cutoff
        are not recorded (they can never make a row a duplicate).  Rebuilds the set
        without expired entries when it must grow, and when an eighth of the horizon
        after the last check finds half its entries expired."""
        if len(ids) == 0:
            return
        self.watermark = max(self.watermark, int(time.max()))
        cutoff = self.cutoff
        offsets, data = ids.buffers()
        rows, row_bytes = int(ids.valid.sum()), int(offsets[-1] - offsets[0])
        full = (self._count + rows > len(self._times) or 2 * (self._count + rows) > len(self._slots)
                or self._used + row_bytes > len(self._arena))
        if full:
            self._rebuild(cutoff, rows, row_bytes)
        elif cutoff - self._purged_at >= max(1, self.horizon_ms // 8):
            # A rebuild touches every live entry: wait until the expired ones are half.
            if 2 * np.count_nonzero(self._times[:self._count] < cutoff) >= self._count:
                self._rebuild(cutoff, rows, row_bytes)
            self._purged_at = cutoff
        self._count, self._used = _idset().insert(*self._state(), self._count, self._used, ids.hashes, offsets, data,
                                                  ids.valid, np.ascontiguousarray(time, dtype=np.int64), cutoff)

    def _rebuild(self, cutoff: int, rows: int, row_bytes: int) -> None:
        """Keep only entries with time >= ``cutoff``, with room for ``rows`` more ids of
        ``row_bytes`` bytes (and as much again, so growth costs amortized linear time)."""
        live = self._times[:self._count] >= cutoff
        live_bytes = int(self._lengths[:self._count][live].sum())
        old = self._state()
        self._allocate(max(_MIN_ENTRIES, 2 * (int(live.sum()) + rows)), 2 * (live_bytes + row_bytes))
        self._count, self._used = _idset().keep_live(*old, cutoff, *self._state())
        self._purged_at = cutoff
