"""Prefix search over a shard of (word, count) rows sorted by word, for ``jobs.topk_search``.

A :class:`PrefixIndex` is built once per shard table (on its first request, e.g. the
start-up warm-up) and kept while the table lives: the counts as numpy, and each word's
first 8 UTF-8 bytes as a big-endian ``uint64`` key, so a prefix of up to 8 bytes is found
with two ``numpy.searchsorted`` calls; longer prefixes (or ones holding a NUL byte) take
a binary search over the words' bytes.
"""

from __future__ import annotations

import bisect
import threading
import weakref

import numpy as np
import pyarrow as pa

SORTED_BY_WORD = {b"sorted_by": b"word"}
KEY_BYTES = 8


class PrefixIndex:
    """Search structures of one shard whose ``word`` column is sorted (UTF-8 byte order)."""

    def __init__(self, words: pa.StringArray, counts: np.ndarray) -> None:
        self.counts = counts
        self._offsets = np.frombuffer(words.buffers()[1], dtype=np.int32)[
            words.offset:words.offset + len(words) + 1]
        self._data = np.frombuffer(words.buffers()[2] or b"", dtype=np.uint8)
        self.keys = _leading_keys(self._offsets, self._data)

    def rows_with_prefix(self, prefix: str) -> tuple[int, int]:
        """Rows ``[lo, hi)`` whose word starts with ``prefix``.

        UTF-8 byte order (Arrow's sort) equals Python's code-point order.  A word starts
        with a prefix of L <= 8 bytes (no NUL) exactly when its key lies between the prefix
        padded with 0x00 and with 0xff bytes; no UTF-8 byte is 0xff, so past 8 bytes every
        word with the prefix sorts below ``prefix + 0xff``."""
        key = prefix.encode()
        if len(key) <= KEY_BYTES and b"\x00" not in key:
            low = int.from_bytes(key.ljust(KEY_BYTES, b"\x00"), "big")
            high = int.from_bytes(key.ljust(KEY_BYTES, b"\xff"), "big")
            lo = int(np.searchsorted(self.keys, np.uint64(low), side="left"))
            return lo, int(np.searchsorted(self.keys, np.uint64(high), side="right"))
        offsets, data = memoryview(self._offsets).cast("B").cast("i"), memoryview(self._data)

        def word(row: int) -> bytes:
            return bytes(data[offsets[row]:offsets[row + 1]])

        rows = range(len(self.keys))
        lo = bisect.bisect_left(rows, key, key=word)
        return lo, bisect.bisect_left(rows, key + b"\xff", lo=lo, key=word)


def _leading_keys(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """Each word's first 8 bytes (zero-padded) as a big-endian uint64, vectorized."""
    starts, lengths = offsets[:-1], np.diff(offsets)
    leading = np.zeros((len(starts), KEY_BYTES), dtype=np.uint8)
    for byte in range(KEY_BYTES):
        has = lengths > byte
        leading[has, byte] = data[starts[has] + byte]
    return leading.view(">u8").ravel().astype(np.uint64)


_CACHE: dict[int, tuple[weakref.ref, PrefixIndex]] = {}
_CACHE_LOCK = threading.Lock()


def prefix_index(shard: pa.Table) -> PrefixIndex | None:
    """The shard's index (built on first use, kept while the table lives), or ``None`` when
    the shard is not marked sorted by word, or its columns cannot be indexed (several
    chunks, nulls, not string / integer)."""
    with _CACHE_LOCK:
        cached = _CACHE.get(id(shard))
    if cached is not None and cached[0]() is shard:
        return cached[1]
    if (shard.schema.metadata or {}).get(b"sorted_by") != b"word":
        return None
    words, counts = shard.column("word"), shard.column("count")
    if (words.num_chunks != 1 or counts.num_chunks != 1 or words.null_count or counts.null_count
            or not pa.types.is_string(words.type) or not pa.types.is_integer(counts.type)):
        return None
    index = PrefixIndex(words.chunk(0), counts.chunk(0).to_numpy())
    with _CACHE_LOCK:
        for key in [key for key, (ref, _) in _CACHE.items() if ref() is None]:
            del _CACHE[key]
        _CACHE[id(shard)] = (weakref.ref(shard), index)
    return index
