"""Stable hash partitioning: the same key goes to the same partition in every process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.hashing import hash_column, hash_partition, partition_ids

pytestmark = pytest.mark.unit


@given(st.lists(st.one_of(st.text(max_size=12), st.none()), max_size=60), st.integers(1, 9))
@settings(max_examples=100, deadline=None)
def test_partitions_are_a_disjoint_cover_with_keys_together(words: list, partitions: int) -> None:
    table = pa.table({"word": pa.array(words, pa.string()), "n": pa.array(range(len(words)), pa.int64())})
    parts = hash_partition(table, ["word"], partitions)
    assert len(parts) == partitions
    assert sorted(sum((p.column("n").to_pylist() for p in parts), [])) == list(range(len(words)))
    homes: dict = {}
    for index, part in enumerate(parts):
        for word in part.column("word").to_pylist():
            assert homes.setdefault(word, index) == index


@given(st.lists(st.text(max_size=10), min_size=1, max_size=30))
@settings(max_examples=50, deadline=None)
def test_hash_ignores_array_offsets_and_chunking(words: list[str]) -> None:
    whole = pa.array(["prefix"] + words)
    direct = hash_column(pa.array(words))
    assert np.array_equal(hash_column(whole.slice(1)), direct)
    assert np.array_equal(hash_column(pa.array(words, pa.large_string())), direct)


def test_hash_is_the_same_in_another_process() -> None:
    table = pa.table({"word": ["alpha", "beta", "", "\u00e9t\u00e9"], "id": [1, 2, 3, -4]})
    here = partition_ids(table, ["word", "id"], 7).tolist()
    code = ("import pyarrow as pa; from engine.common.hashing import partition_ids; "
            "t = pa.table({'word': ['alpha', 'beta', '', '\\u00e9t\\u00e9'], 'id': [1, 2, 3, -4]}); "
            "print(partition_ids(t, ['word', 'id'], 7).tolist())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "12345", "PATH": ""}, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert other.stdout.strip() == str(here)


def test_integer_float_and_temporal_keys() -> None:
    table = pa.table({"i": pa.array([1, 2, 1, None]), "f": pa.array([0.0, -0.0, 1.5, None]),
                      "t": pa.array([0, 1, 0, 2], pa.timestamp("ms"))})
    ids = partition_ids(table, ["i"], 5)
    assert ids[0] == ids[2]
    f = hash_column(table.column("f"))
    assert f[0] == f[1]
    t = hash_column(table.column("t"))
    assert t[0] == t[2] and t[0] != t[1]
    with pytest.raises(TypeError, match="cannot partition"):
        hash_column(pa.array([[1]]))
