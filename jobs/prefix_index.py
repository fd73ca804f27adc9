"""Prefix search over a shard of (word, count) rows sorted by word, for ``jobs.topk_search``.

A :class:`PrefixIndex` is built once per shard table (on its first request, e.g. the
start-up warm-up) and kept while the table lives: each word's first 8 UTF-8 bytes as a
big-endian ``uint64`` key, so a prefix of up to 8 bytes is found with one
``numpy.searchsorted`` call (one or two bytes: in a table of the row where each two-byte
start begins, without a search); longer prefixes (or ones holding a NUL byte) take a binary
search over the words' bytes.  Each row's rank by (count descending, word ascending) is
kept too, so the top k of a prefix's rows are the k smallest ranks in its range.
"""

from __future__ import annotations

import bisect
import threading
import weakref

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.common.tables import arrow_array, numpy_view

SORTED_BY_WORD = {b"sorted_by": b"word"}
_TAKE = pc.get_function("take")
KEY_BYTES = 8


class PrefixIndex:
    """Search structures of one shard whose ``word`` column is sorted (UTF-8 byte order)."""

    def __init__(self, shard: pa.Table) -> None:
        words, counts = shard.column("word").chunk(0), numpy_view(shard.column("count"))
        # ~x orders integers in reverse without the overflow of -x; a stable sort keeps
        # equal counts in row order, which in a shard sorted by word is alphabetical.
        self.by_rank = np.argsort(~counts, kind="stable")  # rows, best first
        self.rank = np.empty(len(counts), dtype=np.int64)
        self.rank[self.by_rank] = np.arange(len(counts))
        self._offsets = np.frombuffer(words.buffers()[1], dtype=np.int32)[
            words.offset:words.offset + len(words) + 1]
        self._data = np.frombuffer(words.buffers()[2] or b"", dtype=np.uint8)
        self.keys = _leading_keys(self._offsets, self._data)
        # Row where each two-byte start begins (65,537 bounds): a word starts with a one- or
        # two-byte prefix exactly when its first two bytes lie in the prefix's range.
        self._two_bytes = np.searchsorted(self.keys >> np.uint64(48), np.arange(65537, dtype=np.uint64))

    def rows_with_prefix(self, prefix: str) -> tuple[int, int]:
        """Rows ``[lo, hi)`` whose word starts with ``prefix``.

        UTF-8 byte order (Arrow's sort) equals Python's code-point order.  A word starts
        with a prefix of L <= 8 bytes (no NUL) exactly when its key lies between the prefix
        padded with 0x00 and with 0xff bytes; no UTF-8 byte is 0xff, so past 8 bytes every
        word with the prefix sorts below ``prefix + 0xff``."""
        key = prefix.encode()
        if 0 < len(key) <= 2 and b"\x00" not in key:  # the table of two-byte starts: no search
            first = key[0] << 8
            return (int(self._two_bytes[first | (key[1] if len(key) == 2 else 0)]),
                    int(self._two_bytes[(first | (key[1] if len(key) == 2 else 0xFF)) + 1]))
        if len(key) <= KEY_BYTES and b"\x00" not in key:
            low = int.from_bytes(key.ljust(KEY_BYTES, b"\x00"), "big")
            high = int.from_bytes(key.ljust(KEY_BYTES, b"\xff"), "big")
            if high == 2**64 - 1:  # the empty prefix: every row
                return 0, len(self.keys)
            # keys <= high are the keys < high + 1: both bounds with side="left", one call
            lo, hi = np.searchsorted(self.keys, np.array([low, high + 1], dtype=np.uint64))
            return int(lo), int(hi)
        offsets, data = memoryview(self._offsets).cast("B").cast("i"), memoryview(self._data)

        def word(row: int) -> bytes:
            return bytes(data[offsets[row]:offsets[row + 1]])

        rows = range(len(self.keys))
        lo = bisect.bisect_left(rows, key, key=word)
        return lo, bisect.bisect_left(rows, key + b"\xff", lo=lo, key=word)


    def take(self, shard: pa.Table, rows: np.ndarray) -> pa.Table:
        """``shard.take(rows)`` for the shard this index was built from."""
        return _TAKE.call([shard, arrow_array(rows)])  # pc.take's keyword handling costs ~1 us

    def top_rows(self, lo: int, hi: int, k: int) -> np.ndarray:
        """Rows of ``[lo, hi)`` with the ``k`` best ranks, best first.

        A wide range is answered from the rows in rank order: its k best are the first k
        of them inside the range, found among the first ``~2 k n / (hi - lo)`` (a prefix
        of the rank order, as if the range's rows were spread evenly over it); when that
        prefix holds fewer than k of them the range's ranks are partitioned instead."""
        width = hi - lo
        if width > 256 and width > 4 * k:
            scan = 2 * k * len(self.rank) // width + 64
            if scan < width:
                candidates = self.by_rank[:scan]
                inside = candidates[(candidates >= lo) & (candidates < hi)]
                if len(inside) >= k:
                    return inside[:k]
            ranks = self.rank[lo:hi]
            best = np.argpartition(ranks, k)[:k]
            return best[np.argsort(ranks[best])] + lo
        return np.argsort(self.rank[lo:hi])[:k] + lo


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
    index = PrefixIndex(shard)
    with _CACHE_LOCK:
        for key in [key for key, (ref, _) in _CACHE.items() if ref() is None]:
            del _CACHE[key]
        _CACHE[id(shard)] = (weakref.ref(shard), index)
    return index
