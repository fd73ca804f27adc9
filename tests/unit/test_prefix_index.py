"""Unit tests of the top-k search job's prefix index against plain Python (no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.prefix_index import prefix_index
from jobs.topk_search import split_shards

pytestmark = pytest.mark.unit


def shard_of(words: list[str], counts: list[int]) -> pa.Table:
    table = pa.table({"word": pa.array(words, pa.string()), "count": pa.array(counts, pa.int64())})
    return split_shards(table, 1)[0]


def best_rows(shard: pa.Table, lo: int, hi: int, k: int) -> list[int]:
    """The oracle: rows of [lo, hi) by count descending, then word (= row order)."""
    counts = shard["count"].to_pylist()
    return sorted(range(lo, hi), key=lambda row: (-counts[row], row))[:k]


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 3000), k=st.integers(1, 40), skew=st.sampled_from(["even", "low", "high"]),
       bounds=st.tuples(st.floats(0, 1), st.floats(0, 1)), seed=st.integers(0, 2**16))
def test_top_rows_of_any_range_equal_plain_python(rows: int, k: int, skew: str,
                                                  bounds: tuple[float, float], seed: int) -> None:
    # "low"/"high": the best counts sit in the first/last rows, so a range's best rows are
    # spread nothing like evenly over the rank order (the index's fallback path).
    rng = np.random.default_rng(seed)
    words = [f"w{index:06d}" for index in range(rows)]  # already sorted by word
    counts = rng.integers(1, 30, rows)  # many ties: the tie-break matters
    if skew != "even":
        ramp = np.arange(rows) if skew == "high" else np.arange(rows)[::-1]
        counts = counts + 100 * ramp
    shard = shard_of(words, counts.tolist())
    index = prefix_index(shard)
    assert index is not None
    lo, hi = sorted(int(b * rows) for b in bounds)
    got = index.top_rows(lo, hi, k).tolist()
    assert got == best_rows(shard, lo, hi, k)


@settings(max_examples=40, deadline=None)
@given(words=st.sets(st.text("abé\x00", min_size=0, max_size=10), min_size=1, max_size=300),
       prefix=st.text("abé\x00", max_size=10))
def test_rows_with_prefix_equal_plain_python(words: set[str], prefix: str) -> None:
    shard = shard_of(sorted(words), [1] * len(words))
    index = prefix_index(shard)
    assert index is not None
    lo, hi = index.rows_with_prefix(prefix)
    table_words = shard["word"].to_pylist()
    assert list(range(lo, hi)) == [row for row, word in enumerate(table_words)
                                   if word.startswith(prefix)]
