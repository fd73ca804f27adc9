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
                          ("aggregate", _aggregate), ("int_groupby", _int_groupby)):
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


def _count_words() -> None:
    from engine.kernels.wordcount import count_words

    count_words(pa.array(["warm up\u3000words\n", None], pa.large_string()))
    count_words(pa.array(["warm up"], pa.string()))


def _hash_binary() -> None:
    from engine.kernels.hashing import hash_binary

    hash_binary(pa.array(["warm", None], pa.string()))
    hash_binary(pa.array([b"up"], pa.large_binary()), seed=1)


def _utf8() -> None:
    from engine.kernels.utf8 import bad_lines, first_invalid

    first_invalid(b"warm up\n")
    bad_lines(b"warm\n\xff up\n")


def _aggregate() -> None:
    from engine.kernels.aggregate import partition_by_hash, sum_by_key

    table = pa.table({"word": ["warm", "up", "warm"], "count": pa.array([1, 2, 3], pa.int64())})
    sum_by_key(table)
    partition_by_hash(table, "word", 2)


def _int_groupby() -> None:
    from engine.kernels.int_groupby import group_by_int_keys, int_key_partitions

    table = pa.table({"a": pa.array([1, 2, 1], pa.int64()), "b": pa.array([3, 3, 3], pa.int32()),
                      "n": pa.array([1, 2, 3], pa.int64()), "x": pa.array([0.5, 1.0, 2.0], pa.float64())})
    group_by_int_keys(table, ["a", "b"], [("n", "sum"), ("n", "min"), ("n", "max"), ("x", "sum"), ("x", "count")])
    int_key_partitions(table, ["a", "b"], 4)
