"""Unit tests: the stable key hash and the per-batch helpers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.hashing import hash_column
from engine.common.tables import as_table
from engine.pipeline.batches import split_by_key

pytestmark = pytest.mark.unit


def test_hash_is_stable_across_processes_and_releases() -> None:
    # Fixed values: routing must not change between processes or versions.
    # (the engine's one key hash, engine.common.hashing.hash_column, shared with the MapReduce shuffle)
    assert hash_column(pa.array(["a", "bb", ""])).tolist() == [1114274585189131075, 18267847833360368582, 0]
    assert hash_column(pa.array([1, 2])).tolist() == [6238072747940578789, 15839785061582574730]


def test_hash_ignores_string_width_slicing_and_chunking() -> None:
    values = ["x", "yy", None, "zzz", "yy", ""]
    plain = hash_column(pa.array(values))
    assert plain.tolist() == hash_column(pa.array(values, pa.large_string())).tolist()
    assert plain[2:].tolist() == hash_column(pa.array(values).slice(2)).tolist()
    assert plain.tolist() == hash_column(pa.chunked_array([values[:3], values[3:]])).tolist()
    assert plain[2] == hash_column(pa.array([None], pa.string()))[0] and plain[1] == plain[4]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=60), st.integers(1, 5))
def test_split_by_key_keeps_every_row_and_groups_keys(keys: list[str | None], parts: int) -> None:
    table = pa.table({"k": pa.array(keys, pa.string()), "i": list(range(len(keys)))})
    pieces = split_by_key(table, "k", parts)
    assert len(pieces) == parts
    assert sorted(sum((p["i"].to_pylist() for p in pieces), [])) == list(range(len(keys)))
    owner: dict[object, int] = {}
    for index, piece in enumerate(pieces):
        assert piece["i"].to_pylist() == sorted(piece["i"].to_pylist())  # order kept inside
        for key in piece["k"].to_pylist():
            assert owner.setdefault(key, index) == index  # a key lives in one piece


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=50))
def test_integer_hash_matches_elementwise(values: list[int]) -> None:
    whole = hash_column(pa.array(values, pa.int64()))
    single = np.array([hash_column(pa.array([v], pa.int64()))[0] for v in values], dtype=np.uint64)
    assert whole.tolist() == single.tolist()


def test_as_table_accepts_batches_and_names_the_producer() -> None:
    batch = pa.RecordBatch.from_pydict({"x": [1]})
    assert as_table(batch, "s").num_rows == 1
    with pytest.raises(TypeError, match="stage 'parse'"):
        as_table([1, 2], "stage 'parse'")
