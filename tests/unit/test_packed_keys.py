"""Packed integer keys (``engine.common.packed_keys``) against plain Python sorts and sets."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.packed_keys import distinct_keys, pack_keys, sort_by_keys, stable_key_order, unpack_keys

pytestmark = pytest.mark.unit

TYPES = {"int8": (pa.int8(), -(2**7), 2**7 - 1), "int32": (pa.int32(), -(2**31), 2**31 - 1),
         "int64": (pa.int64(), -(2**63), 2**63 - 1), "uint32": (pa.uint32(), 0, 2**32 - 1),
         "ts": (pa.timestamp("ms", tz="UTC"), -(2**62), 2**62)}


@st.composite
def keyed_tables(draw: st.DrawFn) -> tuple[pa.Table, list[str]]:
    """A table of one to three integer-like key columns (any range, some nulls) and a row number."""
    names = draw(st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=3))
    rows = draw(st.integers(0, 60))
    columns = {}
    for index, kind in enumerate(names):
        arrow_type, low, high = TYPES[kind]
        narrow = draw(st.booleans())
        values = st.integers(-3, 3) if narrow and low < 0 else st.integers(0, 5) if narrow else st.integers(low, high)
        cells = draw(st.lists(st.none() | values, min_size=rows, max_size=rows))
        columns[f"k{index}"] = pa.array(cells, pa.int64()).cast(arrow_type)
    columns["row"] = pa.array(range(rows), pa.int64())
    return pa.table(columns), [f"k{index}" for index in range(len(names))]


def _python_key(row: tuple) -> tuple:
    return tuple((value is None, 0 if value is None else value) for value in row)  # nulls last per column


def _values(column: pa.ChunkedArray | pa.Array) -> list:
    """Python values; timestamps as their int64 (most do not fit a ``datetime``)."""
    return (column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column).to_pylist()


def _rows(table: pa.Table, names: list[str]) -> list[tuple]:
    return list(zip(*(_values(table.column(name)) for name in names))) if table.num_rows else []


@settings(max_examples=150, deadline=None)
@given(keyed_tables())
def test_distinct_keys_are_the_python_set_sorted_nulls_last(case: tuple[pa.Table, list[str]]) -> None:
    table, keys = case
    got = distinct_keys(table, keys)
    if got is None:  # only when the ranges cannot share 64 bits
        assert pack_keys(table, keys) is None
        return
    assert got.schema == table.select(keys).schema
    assert _rows(got, keys) == sorted(set(_rows(table, keys)), key=_python_key)


@settings(max_examples=150, deadline=None)
@given(keyed_tables())
def test_sorting_by_packed_keys_is_a_stable_python_sort(case: tuple[pa.Table, list[str]]) -> None:
    table, keys = case
    order = stable_key_order(table, keys)
    expected = sorted(range(table.num_rows), key=lambda i: _python_key(_rows(table, keys)[i]))  # sorted() is stable
    if order is None:
        assert pack_keys(table, keys) is None
    else:
        assert order.tolist() == expected
    assert sort_by_keys(table, keys).column("row").to_pylist() == expected  # packed or Arrow's sort


@settings(max_examples=100, deadline=None)
@given(keyed_tables())
def test_unpacking_gives_back_every_key(case: tuple[pa.Table, list[str]]) -> None:
    table, keys = case
    packed = pack_keys(table, keys)
    if packed is None:
        return
    unpacked = unpack_keys(packed.codes, packed.fields)
    assert {name: _values(array) for name, array in unpacked.items()} == \
        {name: _values(table.column(name)) for name in keys}


def test_keys_that_need_more_than_64_bits_do_not_pack() -> None:
    table = pa.table({"a": pa.array([-(2**63), 2**63 - 1]), "b": pa.array([0, 1])})
    assert pack_keys(table, ["a"]) is not None  # 64 bits exactly
    assert pack_keys(table, ["a", "b"]) is None
    assert distinct_keys(table, ["a", "b"]) is None
    assert pack_keys(pa.table({"s": ["x"]}), ["s"]) is None  # not an integer column


def test_large_tables_take_the_packed_path_and_agree_with_arrow() -> None:
    rng = np.random.default_rng(3)
    rows = 250_000
    users = rng.integers(0, 50_000, rows)
    minutes = pa.array(rng.integers(29_000_000, 29_002_880, rows), pa.int64(), mask=rng.random(rows) < 0.001)
    table = pa.table({"minute": minutes, "user_id": users})
    got = distinct_keys(table, ["minute", "user_id"])
    arrow = table.group_by(["minute", "user_id"]).aggregate([]).sort_by(
        [("minute", "ascending"), ("user_id", "ascending")])
    assert got.equals(arrow.select(["minute", "user_id"]))
    ordered = sort_by_keys(table, ["minute", "user_id"])
    assert ordered.equals(table.sort_by([("minute", "ascending"), ("user_id", "ascending")]))
    assert sort_by_keys(ordered, ["minute", "user_id"]) is ordered  # already in order: returned as it is
