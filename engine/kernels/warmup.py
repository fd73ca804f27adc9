"""Compile (or load from the on-disk cache) every kernel before real work arrives.

``warm_up()`` runs each compiled kernel once on a tiny input with the same argument types
as real calls, so a worker's first task does not pay for compilation.  Processes that warm
up at the same time take turns (a lock file in the cache directory): on a fresh cache the
first compiles and the others then load its results, instead of every worker compiling
the same kernels at once on the same cores.  ``python -m
engine.kernels`` prints the time each took as JSON: run it with an empty
``NUMBA_CACHE_DIR`` to measure the compile cost on a fresh cache, and again to measure
loading from the cache.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterator

import numpy as np
import pyarrow as pa


def warm_up() -> dict[str, float]:
    """Compile or load every kernel; return the seconds each group took (import included)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    from engine.kernels import _jit  # imports numba

    seconds["import_numba"] = time.perf_counter() - started
    with _one_at_a_time(_jit.configure_cache()) as waited:
        seconds["waited_for_lock"] = waited
        for name, run in (("count_words", _count_words), ("hash_binary", _hash_binary), ("utf8", _utf8),
                          ("aggregate", _aggregate), ("int_groupby", _int_groupby), ("idset", _idset)):
            begin = time.perf_counter()
            run()
            seconds[name] = time.perf_counter() - begin
    seconds["total"] = time.perf_counter() - started
    return seconds


@contextlib.contextmanager
def _one_at_a_time(cache_dir: str) -> Iterator[float]:
    """Hold an exclusive lock on ``cache_dir/.warm-up.lock`` (where ``fcntl`` exists); yields
    the seconds spent waiting for it.  Without a usable lock file, no waiting."""
    try:
        import fcntl

        handle = open(os.path.join(cache_dir, ".warm-up.lock"), "a")
    except (ImportError, OSError):
        yield 0.0
        return
    with handle:
        started = time.perf_counter()
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - started
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _binary(values: list[bytes | None], kind: pa.DataType) -> pa.Array:
    """An Arrow (large) string or binary array of ``values`` built from buffers: ``pa.array``
    imports pandas on first use (0.5-0.8 s), which a worker would otherwise pay only here."""
    large = kind in (pa.large_string(), pa.large_binary())
    offsets = np.zeros(len(values) + 1, np.int64 if large else np.int32)
    offsets[1:] = np.cumsum([len(value or b"") for value in values])
    valid = np.packbits(np.array([value is not None for value in values]), bitorder="little")
    data = b"".join(value or b"" for value in values)
    return pa.Array.from_buffers(kind, len(values), [pa.py_buffer(valid), pa.py_buffer(offsets), pa.py_buffer(data)])


def _numbers(values: list[float], kind: pa.DataType) -> pa.Array:
    """An Arrow numeric array of ``values`` built from a numpy buffer (no pandas import)."""
    from engine.common.tables import arrow_array

    return arrow_array(np.array(values, {pa.int64(): np.int64, pa.int32(): np.int32}.get(kind, np.float64)))


def _count_words() -> None:
    from engine.kernels.wordcount import count_words

    count_words(_binary(["warm up\u3000words\n".encode(), None], pa.large_string()))
    count_words(_binary([b"warm up"], pa.string()))


def _hash_binary() -> None:
    from engine.kernels.hashing import hash_binary

    hash_binary(_binary([b"warm", None], pa.string()))
    hash_binary(_binary([b"up"], pa.large_binary()), seed=1)


def _utf8() -> None:
    from engine.kernels.utf8 import bad_lines, first_invalid

    first_invalid(b"warm up\n")
    bad_lines(b"warm\n\xff up\n")


def _aggregate() -> None:
    from engine.kernels.aggregate import partition_by_hash, sum_by_key

    table = pa.table({"word": _binary([b"warm", b"up", b"warm"], pa.string()), "count": _numbers([1, 2, 3], pa.int64())})
    sum_by_key(table)
    partition_by_hash(table, "word", 2)


def _int_groupby() -> None:
    from engine.kernels.int_groupby import group_by_int_keys, int_key_partitions

    table = pa.table({"a": _numbers([1, 2, 1], pa.int64()), "b": _numbers([3, 3, 3], pa.int32()),
                      "n": _numbers([1, 2, 3], pa.int64()), "x": _numbers([0.5, 1.0, 2.0], pa.float64())})
    group_by_int_keys(table, ["a", "b"], [("n", "sum"), ("n", "min"), ("n", "max"), ("x", "sum"), ("x", "count")])
    int_key_partitions(table, ["a", "b"], 4)


def _idset() -> None:
    from engine.kernels.idset import find_duplicates, insert, keep_live

    slots, times, starts = np.zeros(8, np.uint64), np.zeros(4, np.int64), np.zeros(4, np.int64)
    lengths, arena = np.zeros(4, np.uint32), np.zeros(16, np.uint8)
    hashes, offsets = np.array([1, 2], np.uint64), np.array([0, 4, 6], np.int64)
    data, valid, row_times = np.frombuffer(b"warmup", np.uint8), np.ones(2, np.bool_), np.array([1, 2], np.int64)
    find_duplicates(slots, times, starts, lengths, arena, hashes, offsets, data, valid, row_times, 0)
    insert(slots, times, starts, lengths, arena, 0, 0, hashes, offsets, data, valid, row_times, 0)
    keep_live(slots, times, starts, lengths, arena, 0, np.zeros(8, np.uint64), np.zeros(4, np.int64),
              np.zeros(4, np.int64), np.zeros(4, np.uint32), np.zeros(16, np.uint8))
