"""A compiled, exact set of byte-string ids with a time per id: open addressing over hashes.

The state is plain numpy arrays owned by the caller (``engine.lambda_arch.dedup``):

- ``slots``: ``uint64``, a power-of-two length of at most 2**32; ``EMPTY`` (0), or an
  entry ``e`` held as ``tag << 32 | (e + 1)`` where ``tag`` is the low 32 bits of the
  id's stable hash (``hashing.hash_binary``), so a probe past other ids reads only this
  array and a rebuild finds each id's new home without its hash;
- per entry ``e``: ``times[e]`` (the newest time stored for it), ``starts[e]`` and
  ``lengths[e]`` (its bytes in ``arena``).

A probe starts at ``tag & (len(slots) - 1)`` (the hashes are finalizer-mixed, so their
low bits are uniform) and steps linearly; an entry matches only when its tag, length and
every byte are equal, so a hash collision costs a comparison, never a wrong answer.  The
caller sizes the arrays before each call (:func:`insert` never grows them), keeps at
most half the slots used and fewer than 2**32 - 1 entries.  Batches are given as the
offsets (``int64``) and bytes of an Arrow ``large_binary`` array, with each row's hash,
validity and time.
"""

from __future__ import annotations

import numpy as np

from engine.kernels._jit import kernel, prefetch

EMPTY = 0
_LOW = np.uint64(0xFFFFFFFF)
_U32 = np.uint64(32)
# Rows ahead whose home slot is prefetched: a set of millions of ids is far bigger than the
# CPU caches, so each probe would otherwise wait for memory.
AHEAD = 16


@kernel
def _same_bytes(left: np.ndarray, left_start: int, right: np.ndarray, right_start: int,
                length: int) -> bool:
    for index in range(length):
        if left[left_start + index] != right[right_start + index]:
            return False
    return True


@kernel
def _slot_value(key: np.uint64, entry: int) -> np.uint64:
    return ((key & _LOW) << _U32) | np.uint64(entry + 1)


@kernel
def _probe(slots: np.ndarray, starts: np.ndarray, lengths: np.ndarray, arena: np.ndarray, key: np.uint64,
           data: np.ndarray, start: int, length: int) -> tuple[int, int]:
    """(slot, entry) of the id ``data[start:start + length]`` with hash ``key``, or (the
    empty slot where it would go, -1)."""
    mask = len(slots) - 1
    tag = key & _LOW
    slot = np.int64(tag & np.uint64(mask))
    while slots[slot] != EMPTY:
        value = slots[slot]
        if value >> _U32 == tag:
            entry = np.int64(value & _LOW) - 1
            if lengths[entry] == length and _same_bytes(arena, starts[entry], data, start, length):
                return slot, entry
        slot = (slot + 1) & mask
    return slot, -1


@kernel
def find_duplicates(slots: np.ndarray, times: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                    arena: np.ndarray, row_hashes: np.ndarray, offsets: np.ndarray, data: np.ndarray,
                    valid: np.ndarray, row_times: np.ndarray, cutoff: int) -> np.ndarray:
    """Which valid rows repeat an id held with time >= ``cutoff``, or an earlier row of
    the batch with the same id and time >= ``cutoff``.  Reads the set, never changes it."""
    rows = len(row_hashes)
    duplicate = np.zeros(rows, dtype=np.bool_)
    # The batch's own ids: a set of the same layout over the batch (entry = first row).
    size = 4
    while size < 2 * rows:
        size *= 2
    batch_slots = np.zeros(size, dtype=np.uint64)
    batch_starts = offsets[:-1]
    batch_lengths = offsets[1:] - offsets[:-1]
    eligible = np.zeros(rows, dtype=np.bool_)  # by a batch id's first row: a copy had time >= cutoff
    mask = np.uint64(len(slots) - 1)
    for row in range(rows):
        if row + AHEAD < rows:
            prefetch(slots, np.int64(row_hashes[row + AHEAD] & mask))
        if not valid[row]:
            continue
        key = row_hashes[row]
        start, length = offsets[row], offsets[row + 1] - offsets[row]
        _, entry = _probe(slots, starts, lengths, arena, key, data, start, length)
        found = entry >= 0 and times[entry] >= cutoff
        slot, first = _probe(batch_slots, batch_starts, batch_lengths, data, key, data, start, length)
        if first < 0:
            batch_slots[slot] = _slot_value(key, row)
            eligible[row] = row_times[row] >= cutoff
        elif eligible[first]:
            found = True
        elif row_times[row] >= cutoff:
            eligible[first] = True
        duplicate[row] = found
    return duplicate


@kernel
def insert(slots: np.ndarray, times: np.ndarray, starts: np.ndarray, lengths: np.ndarray, arena: np.ndarray,
           count: int, used: int, row_hashes: np.ndarray, offsets: np.ndarray, data: np.ndarray,
           valid: np.ndarray, row_times: np.ndarray, cutoff: int) -> tuple[int, int]:
    """Add each valid row's id with its time (an id already held keeps the newer time),
    except rows with time < ``cutoff``; returns the new (entry count, arena bytes used).
    The caller has made room."""
    rows = len(row_hashes)
    mask = np.uint64(len(slots) - 1)
    for row in range(rows):
        if row + AHEAD < rows:
            prefetch(slots, np.int64(row_hashes[row + AHEAD] & mask))
        if not valid[row] or row_times[row] < cutoff:
            continue
        key = row_hashes[row]
        start, length = offsets[row], offsets[row + 1] - offsets[row]
        slot, entry = _probe(slots, starts, lengths, arena, key, data, start, length)
        if entry >= 0:
            times[entry] = max(times[entry], row_times[row])
            continue
        times[count], starts[count], lengths[count] = row_times[row], used, length
        for index in range(length):  # a loop: a slice assignment costs more than a short id
            arena[used + index] = data[start + index]
        slots[slot] = _slot_value(key, count)
        count += 1
        used += length
    return count, used


@kernel
def keep_live(slots: np.ndarray, times: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
              arena: np.ndarray, cutoff: int, new_slots: np.ndarray, new_times: np.ndarray,
              new_starts: np.ndarray, new_lengths: np.ndarray, new_arena: np.ndarray) -> tuple[int, int]:
    """Copy the entries with time >= ``cutoff`` into the new arrays (``new_slots`` all
    ``EMPTY``, big enough), in slot order; returns their (entry count, arena bytes used)."""
    mask = np.uint64(len(new_slots) - 1)
    kept, used = 0, 0
    size = len(slots)
    for slot in range(size):
        if slot + AHEAD < size and slots[slot + AHEAD] != EMPTY:  # the entries are read out of order
            ahead = np.int64(slots[slot + AHEAD] & _LOW) - 1
            prefetch(times, ahead)
            prefetch(starts, ahead)
            prefetch(lengths, ahead)
        if slot + AHEAD // 2 < size and slots[slot + AHEAD // 2] != EMPTY:
            prefetch(arena, starts[np.int64(slots[slot + AHEAD // 2] & _LOW) - 1])
        value = slots[slot]
        if value == EMPTY:
            continue
        entry = np.int64(value & _LOW) - 1
        if times[entry] < cutoff:
            continue
        length, start = lengths[entry], starts[entry]
        new_times[kept], new_starts[kept], new_lengths[kept] = times[entry], used, length
        for index in range(length):
            new_arena[used + index] = arena[start + index]
        tag = value >> _U32
        target = np.int64(tag & mask)
        while new_slots[target] != EMPTY:
            target = (target + np.int64(1)) & np.int64(mask)
        new_slots[target] = (tag << _U32) | np.uint64(kept + 1)
        kept += 1
        used += length
    return kept, used
