"""The fused word split + count kernel: one compiled pass over the UTF-8 bytes of a string array.

A word is a maximal run of characters for which ``str.isspace()`` is false, and each value
is split on its own (the end of one value never joins the start of the next), so
``count_words(array)`` equals ``Counter(w for v in values for w in v.split())`` over the
non-null values.

How: one pass over the bytes, 2048 words at a time: the words are found, then counted.
They are found eight bytes at a time (a word-parallel test flags the bytes below
``!`` or above ``\x7f``, the only ones that can start whitespace); a flagged byte is
classified through a 256-entry table, and only at the lead bytes of multi-byte whitespace
(``\xc2``, ``\xe1``, ``\xe2``, ``\xe3``) is the character decoded.  Each batch of found
words is then counted in an open-addressing table probed by a mixed 64-bit hash, with
an exact comparison (length, first eight bytes, the rest byte by byte) on every tag match;
the table doubles as it fills.  Slots are prefetched a few words ahead.  The output string
array is built from the table by a compiled loop, without per-word Python objects.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba.cpython.unsafe.numbers import trailing_zeros

from engine.common.tables import arrow_array
from engine.kernels._jit import kernel, load_u64, prefetch
from engine.kernels.hashing import binary_buffers, fmix64
from engine.kernels.whitespace import LEAD, SPACE, byte_classes, space_codepoints

_INITIAL_SLOTS = 1 << 13
_BATCH = 2048  # words found before they are counted
_SLOT_AHEAD = 16  # words between prefetching a word's slot and its lookup
_ENTRY_AHEAD = 8  # words between reading a word's slot to prefetch its entry and its lookup
_FIELDS = 4  # per entry: packed first 8 bytes, length, first position, count
_TAG = np.uint64(0xFFFFFFFF00000000)
_INDEX = np.uint64(0xFFFFFFFF)
_WORD_SEED = np.uint64(0x9E3779B97F4A7C15)
_MULTIPLIER = np.uint64(0x9FB21C651E98DF25)
_LENGTH_MIX = np.uint64(0xC2B2AE3D27D4EB4F)
_LOW_BITS = np.uint64(0x2121212121212121)  # "!" in every byte
_HIGH_BITS = np.uint64(0x8080808080808080)
_INT32_LIMIT = 2**31 - 1


@kernel
def space_width(data: np.ndarray, i: int, end: int, codepoints: np.ndarray) -> int:
    """Bytes of the whitespace character starting at the lead byte ``data[i]``, or 0 if it is none."""
    lead = np.int64(data[i])
    if lead < 0xE0:
        if i + 1 >= end or (data[i + 1] & 0xC0) != 0x80:
            return 0
        point = ((lead & 0x1F) << 6) | (np.int64(data[i + 1]) & 0x3F)
        width = 2
    else:
        if i + 2 >= end or (data[i + 1] & 0xC0) != 0x80 or (data[i + 2] & 0xC0) != 0x80:
            return 0
        point = ((lead & 0x0F) << 12) | ((np.int64(data[i + 1]) & 0x3F) << 6) | (np.int64(data[i + 2]) & 0x3F)
        width = 3
    if point < codepoints.size and codepoints[point]:
        return width
    return 0


@kernel
def _fold(h: np.uint64, chunk: np.uint64) -> np.uint64:
    h = (h ^ chunk) * _MULTIPLIER
    return (h << np.uint64(29)) | (h >> np.uint64(35))


@kernel
def _grown(values: np.ndarray) -> np.ndarray:
    bigger = np.empty(values.size * 2, dtype=values.dtype)
    bigger[: values.size] = values
    return bigger


@kernel
def _slots_for(hashes: np.ndarray, entries: int, slots: int) -> np.ndarray:
    """A fresh slot table of ``slots`` (a power of two) holding entries 0..entries-1."""
    table = np.zeros(slots, dtype=np.uint64)
    mask = np.uint64(slots - 1)
    for entry in range(entries):
        h = hashes[entry]
        slot = h & mask
        while table[slot] != 0:
            slot = (slot + np.uint64(1)) & mask
        table[slot] = (h & _TAG) | np.uint64(entry + 1)
    return table


@kernel
def _scan_words(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray, classes: np.ndarray,
                codepoints: np.ndarray, row: int, i: int, found: np.ndarray) -> tuple:
    """Find up to ``found.shape[0]`` words from ``data[i]`` of ``row`` (``i`` < 0: the row's start).

    Fills rows of ``found`` with (hash, packed first 8 bytes, start, length) and returns
    ``(row, i, count)``: where to resume (``row`` is the row count at the end) and how
    many rows were filled.  A word's hash folds its 8-byte chunks counted from its start;
    the last, partial chunk (zero-padded) and the length enter the final mix.
    """
    rows = offsets.size - 1
    count = 0
    while row < rows and count < found.shape[0]:
        if valid.size and not valid[row]:
            row, i = row + 1, -1
            continue
        end = offsets[row + 1]
        if i < 0:
            i = offsets[row]
        while count < found.shape[0]:
            while i < end:  # skip whitespace
                kind = classes[data[i]]
                if kind == SPACE:
                    i += 1
                    continue
                width = space_width(data, i, end, codepoints) if kind == LEAD else 0
                if width == 0:
                    break
                i += width
            if i >= end:
                break
            word = i
            # Find the word's end eight bytes at a time: ``flagged`` marks bytes below "!" or
            # above 0x7f (only those can start whitespace); its lowest mark is exact even where
            # borrows blur the others.  (Helpers taking arrays cost a reference count per call,
            # so this loop is written out.)
            done = False
            while i + 8 <= data.size:
                value = load_u64(data, i)
                flagged = (((value - _LOW_BITS) & ~value) | value) & _HIGH_BITS
                if end - i < 8:
                    flagged |= np.uint64(0x80) << np.uint64(8 * (end - i))
                if flagged == 0:
                    i += 8
                    continue
                i += np.int64(trailing_zeros(flagged)) >> 3
                if i >= end:
                    i, done = end, True
                    break
                kind = classes[data[i]]
                if kind == SPACE or (kind == LEAD and space_width(data, i, end, codepoints) != 0):
                    done = True
                    break
                i += 1
            while not done and i < end:
                kind = classes[data[i]]
                if kind == SPACE or (kind == LEAD and space_width(data, i, end, codepoints) != 0):
                    break
                i += 1
            length = i - word
            h = _WORD_SEED
            at = word
            while at + 8 <= i:
                h = _fold(h, load_u64(data, at))
                at += 8
            tail = np.uint64(0)
            if at < i:
                if at + 8 <= data.size:
                    tail = load_u64(data, at) & ((np.uint64(1) << np.uint64(8 * (i - at))) - np.uint64(1))
                else:
                    for k in range(i - at):
                        tail |= np.uint64(data[at + k]) << np.uint64(8 * k)
            prefix = load_u64(data, word) if length >= 8 else tail
            h = fmix64(h ^ tail ^ (np.uint64(length) * _LENGTH_MIX))
            found[count, 0] = np.int64(h)
            found[count, 1] = np.int64(prefix)
            found[count, 2] = word
            found[count, 3] = length
            count += 1
        if i >= end:
            row, i = row + 1, -1
    return row, i, count


@kernel
def _count_found(data: np.ndarray, found: np.ndarray, count: int, table: np.ndarray, hashes: np.ndarray,
                 words: np.ndarray, entries: int) -> int:
    """Count the ``count`` words of ``found`` into the table; returns the new entry count.

    The caller leaves room for ``count`` new entries.  A slot holds ``hash's high 32 bits |
    entry + 1``; entry ``e`` is ``words[4e:4e + 4]``: the word's packed first 8 bytes, its
    length, its first position and its count.  Words match when tag, length, packed prefix
    and the bytes past the prefix are equal.  A word's slot is prefetched _SLOT_AHEAD words
    before its lookup and its entry _ENTRY_AHEAD words before, so lookups overlap in memory.
    """
    mask = np.uint64(table.size - 1)
    for j in range(count):
        if j + _SLOT_AHEAD < count:
            prefetch(table, np.uint64(found[j + _SLOT_AHEAD, 0]) & mask)
        if j + _ENTRY_AHEAD < count:
            ahead = table[np.uint64(found[j + _ENTRY_AHEAD, 0]) & mask]
            if ahead != 0:
                prefetch(words, (np.int64(ahead & _INDEX) - 1) * _FIELDS)
        h = np.uint64(found[j, 0])
        prefix, word, length = found[j, 1], found[j, 2], found[j, 3]
        tag = h & _TAG
        slot = h & mask
        while True:
            held = table[slot]
            if held == 0:
                hashes[entries] = h
                at = entries * _FIELDS
                words[at] = prefix
                words[at + 1] = length
                words[at + 2] = word
                words[at + 3] = 1
                entries += 1
                table[slot] = tag | np.uint64(entries)
                break
            if (held & _TAG) == tag:
                at = (np.int64(held & _INDEX) - 1) * _FIELDS
                if words[at + 1] == length and words[at] == prefix:
                    first = words[at + 2]
                    same = True
                    for k in range(8, length):  # the bytes past the prefix
                        if data[first + k] != data[word + k]:
                            same = False
                            break
                    if same:
                        words[at + 3] += 1
                        break
            slot = (slot + np.uint64(1)) & mask
    return entries


@kernel
def count_word_bytes(data: np.ndarray, offsets: np.ndarray, valid: np.ndarray, classes: np.ndarray,
                     codepoints: np.ndarray) -> tuple:
    """Count the words of values ``data[offsets[i]:offsets[i + 1]]`` (``valid`` empty: no nulls).

    Returns ``(words, entries)``: ``words[4e:4e + 4]`` for e < entries is (packed first 8
    bytes, length, first position in ``data``, count) of each distinct word, in first-seen
    order.  Words are found a batch at a time, then counted.  The slot table has twice as
    many slots as there is room for entries, so it is never more than half full; both
    double whenever a batch might not fit.
    """
    slots = _INITIAL_SLOTS
    table = np.zeros(slots, dtype=np.uint64)
    hashes = np.empty(slots // 2, dtype=np.uint64)
    words = np.empty(slots // 2 * _FIELDS, dtype=np.int64)
    found = np.empty((_BATCH, 4), dtype=np.int64)
    row, i, entries = 0, -1, 0
    while row < offsets.size - 1:
        row, i, count = _scan_words(data, offsets, valid, classes, codepoints, row, i, found)
        while entries + count > hashes.size:
            slots *= 2
            hashes, words = _grown(hashes), _grown(words)
            table = _slots_for(hashes, entries, slots)
        entries = _count_found(data, found, count, table, hashes, words, entries)
    return words, entries


@kernel
def gather_words(data: np.ndarray, words: np.ndarray, entries: int, offsets: np.ndarray) -> np.ndarray:
    """Fill ``offsets`` (size entries + 1) and return the concatenated bytes of the words."""
    offsets[0] = 0
    for entry in range(entries):
        offsets[entry + 1] = offsets[entry] + words[entry * _FIELDS + 1]
    out = np.empty(offsets[entries], dtype=np.uint8)
    for entry in range(entries):
        start, length, at = words[entry * _FIELDS + 2], words[entry * _FIELDS + 1], offsets[entry]
        for k in range(length):
            out[at + k] = data[start + k]
    return out


def count_words(text: pa.Array | pa.ChunkedArray) -> pa.Table:
    """A ``(word: string, count: int64)`` table of the words of each non-null value of ``text``.

    Exactly ``Counter(w for v in values for w in v.split())``; rows in first-occurrence order;
    ``word`` is ``large_string`` only when the distinct words hold more than 2 GiB.  A
    chunked input with several chunks is concatenated first (one copy); an array of type
    ``null`` has no words.
    """
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks != 1 else text.chunk(0)
    if pa.types.is_null(text.type):  # e.g. ``pa.array([])`` or all nulls: no words
        text = pa.nulls(0, pa.string())
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        raise TypeError(f"count_words needs a string or large_string array, got {text.type}")
    data, offsets, valid = binary_buffers(text)
    words, entries = count_word_bytes(data, offsets, valid, byte_classes(), space_codepoints())
    fields = words[: entries * _FIELDS].reshape(entries, _FIELDS)
    large = int(fields[:, 1].sum()) > _INT32_LIMIT
    word_offsets = np.empty(entries + 1, dtype=np.int64 if large else np.int32)
    word_data = gather_words(data, words, entries, word_offsets)
    array = pa.Array.from_buffers(pa.large_string() if large else pa.string(), entries,
                                  [None, pa.py_buffer(word_offsets), pa.py_buffer(word_data)])
    return pa.table({"word": array, "count": arrow_array(np.ascontiguousarray(fields[:, 3]))})
