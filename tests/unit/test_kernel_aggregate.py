"""The compiled combine (sum_by_key) and partitioner (partition_by_hash) against plain Python."""

from __future__ import annotations

import collections

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels.aggregate import partition_by_hash, sum_by_key
from engine.kernels.hashing import hash_binary_reference

pytestmark = pytest.mark.unit

KEYS = st.text(alphabet="ab\u00e9 ", max_size=12) | st.sampled_from(["abcdefghij", "abcdefghik", ""])
ROWS = st.lists(st.tuples(KEYS, st.integers(-(2**40), 2**40)), max_size=60)


@given(ROWS)
@settings(max_examples=200, deadline=None)
def test_sum_by_key_equals_a_dict_of_sums(rows: list[tuple[str, int]]) -> None:
    table = pa.table({"word": pa.array([k for k, _ in rows], pa.string()), "count": pa.array([v for _, v in rows], pa.int64())})
    expected: dict[str, int] = collections.defaultdict(int)
    for key, value in rows:
        expected[key] += value
    got = sum_by_key(table)
    assert got.column("word").to_pylist() == list(expected)  # first-seen order
    assert got.column("count").to_pylist() == list(expected.values())
    assert got.schema.field("count").type == pa.int64()


def test_sum_by_key_over_chunks_and_many_keys() -> None:
    words = [f"w{i % 30_000}" for i in range(100_000)]
    table = pa.concat_tables([pa.table({"word": words[:50_000], "count": [1] * 50_000}),
                              pa.table({"word": words[50_000:], "count": [2] * 50_000})])
    got = dict(zip(*(sum_by_key(table).column(c).to_pylist() for c in ("word", "count"))))
    expected: dict[str, int] = collections.defaultdict(int)
    for index, word in enumerate(words):
        expected[word] += 1 if index < 50_000 else 2
    assert got == expected


def test_sum_by_key_refuses_null_keys() -> None:
    with pytest.raises(ValueError, match="nulls"):
        sum_by_key(pa.table({"word": ["a", None], "count": [1, 2]}))


@given(st.lists(KEYS, max_size=60), st.integers(1, 7))
@settings(max_examples=200, deadline=None)
def test_partition_by_hash_routes_by_the_stable_hash(keys: list[str], partitions: int) -> None:
    table = pa.table({"word": pa.array(keys, pa.string()), "row": list(range(len(keys)))})
    parts = partition_by_hash(table, "word", partitions)
    assert len(parts) == partitions
    hashes = hash_binary_reference(keys)
    for index, part in enumerate(parts):
        rows = part.column("row").to_pylist()
        assert rows == sorted(rows)  # order kept
        assert all(hashes[r] % partitions == index for r in rows) or partitions == 1
    assert sorted(r for p in parts for r in p.column("row").to_pylist()) == list(range(len(keys)))


def test_the_word_count_combiner_sums_with_or_without_null_words() -> None:
    from jobs.wordcount_job import sum_word_counts

    table = pa.table({"word": ["a", "b", "a"], "count": pa.array([1, 2, 3], pa.int64())})
    assert sum_word_counts(table).to_pylist() == [{"word": "a", "count": 4}, {"word": "b", "count": 2}]
    with_null = pa.table({"word": ["a", None, "a", None], "count": pa.array([1, 2, 3, 4], pa.int64())})
    assert sorted(sum_word_counts(with_null).to_pylist(), key=lambda r: (r["word"] is None, r["word"] or "")) == \
        [{"word": "a", "count": 4}, {"word": None, "count": 6}]
