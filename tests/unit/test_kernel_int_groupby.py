"""The compiled integer-key group-by (and GroupByAggregate's use of it) against plain Python."""

from __future__ import annotations

import collections

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.combine import GroupByAggregate
from engine.common.hashing import hash_partition, partition_ids
from engine.kernels.int_groupby import group_by_int_keys

pytestmark = pytest.mark.unit

SMALL = st.integers(-3, 3)  # few distinct keys: many collisions of whole keys
WIDE = st.integers(-(2**63), 2**63 - 1)
ROWS = st.lists(st.tuples(SMALL | WIDE, SMALL, st.integers(-(2**40), 2**40),
                          st.floats(-1e6, 1e6, allow_nan=False)), min_size=1, max_size=80)


def _python_groups(rows: list[tuple]) -> dict[tuple[int, int], list[tuple]]:
    groups: dict[tuple[int, int], list[tuple]] = collections.defaultdict(list)
    for row in rows:
        groups[(row[0], row[1])].append(row)
    return groups


@given(ROWS)
@settings(max_examples=200, deadline=None)
def test_groups_sums_extremes_and_counts_equal_plain_python(rows: list[tuple]) -> None:
    table = pa.table({"a": pa.array([r[0] for r in rows], pa.int64()), "b": pa.array([r[1] for r in rows], pa.int32()),
                      "n": pa.array([r[2] for r in rows], pa.int64()), "x": pa.array([r[3] for r in rows], pa.float64())})
    specs = [("n", "sum"), ("n", "min"), ("n", "max"), ("n", "count"), ("x", "sum")]
    got = group_by_int_keys(table, ["a", "b"], specs)
    assert got is not None
    expected = _python_groups(rows)
    keys = list(zip(got.column("a").to_pylist(), got.column("b").to_pylist()))
    assert keys == list(expected)  # one row per key, first-seen order
    assert got.schema.field("b").type == pa.int32()  # keys keep their type
    for index, key in enumerate(keys):
        members = expected[key]
        assert got.column("n_sum")[index].as_py() == sum(r[2] for r in members)
        assert got.column("n_min")[index].as_py() == min(r[2] for r in members)
        assert got.column("n_max")[index].as_py() == max(r[2] for r in members)
        assert got.column("n_count")[index].as_py() == len(members)
        assert got.column("x_sum")[index].as_py() == pytest.approx(sum(r[3] for r in members), rel=1e-9, abs=1e-6)


def test_distinct_keys_over_chunks_match_a_python_set() -> None:
    rng = np.random.default_rng(3)
    minutes, users = rng.integers(0, 50, 300_000), rng.integers(0, 5_000, 300_000)
    table = pa.concat_tables([pa.table({"minute": minutes[:100_000], "user": users[:100_000]}),
                              pa.table({"minute": minutes[100_000:], "user": users[100_000:]})])
    got = group_by_int_keys(table, ["minute", "user"], [])
    assert got is not None
    pairs = list(zip(got.column("minute").to_pylist(), got.column("user").to_pylist()))
    assert len(pairs) == len(set(pairs)) == len(set(zip(minutes.tolist(), users.tolist())))


@pytest.mark.parametrize("table, specs", [
    (pa.table({"a": pa.array([1, None], pa.int64()), "n": [1, 2]}), [("n", "sum")]),  # a null key
    (pa.table({"a": ["x", "y"], "n": [1, 2]}), [("n", "sum")]),  # a string key
    (pa.table({"a": [1, 2], "n": pa.array([1, None], pa.int64())}), [("n", "sum")]),  # a null value
    (pa.table({"a": [1, 2], "x": [0.5, 1.5]}), [("x", "min")]),  # float extremes (NaN rules): Arrow's
    (pa.table({"a": pa.array([], pa.int64()), "n": pa.array([], pa.int64())}), [("n", "sum")]),
])
def test_tables_outside_the_fast_path_are_left_to_arrow(table: pa.Table, specs: list) -> None:
    assert group_by_int_keys(table, ["a"], specs) is None


def test_group_by_aggregate_gives_the_same_answer_above_and_below_the_compiled_size() -> None:
    rng = np.random.default_rng(5)
    rows = 150_000  # above the size where GroupByAggregate switches to the kernel
    table = pa.table({"advertiser": rng.integers(0, 40, rows), "minute": rng.integers(0, 30, rows),
                      "views": rng.integers(0, 2, rows), "spend": rng.random(rows)})
    agg = GroupByAggregate(("advertiser", "minute"), {"views": "sum", "spend": "sum"})
    whole = agg(table)
    pieces = agg.finalize(agg.merge([agg.add(agg.create(), table.slice(i, 1_000)) for i in range(0, rows, 1_000)]))
    expected: dict[tuple[int, int], list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for a, m, v, s in zip(*(table.column(c).to_pylist() for c in table.column_names)):
        expected[(a, m)][0] += v
        expected[(a, m)][1] += s
    for result in (whole, pieces):
        got = {(a, m): (v, s) for a, m, v, s in zip(*(result.column(c).to_pylist()
                                                      for c in ("advertiser", "minute", "views", "spend")))}
        assert got.keys() == expected.keys()
        for key, (views, spend) in got.items():
            assert views == expected[key][0] and spend == pytest.approx(expected[key][1], rel=1e-9)


def test_hash_partition_of_a_large_table_keeps_row_order_within_each_partition() -> None:
    rows = 120_000  # above the size where the partitioner counts instead of sorting
    table = pa.table({"k": np.arange(rows) % 977, "row": np.arange(rows)})
    ids = partition_ids(table, ["k"], 4)
    parts = hash_partition(table, ["k"], 4)
    for number, part in enumerate(parts):
        assert part.column("row").to_pylist() == [r for r in range(rows) if ids[r] == number]


def test_the_compiled_partition_ids_equal_the_numpy_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.common import hashing

    rng = np.random.default_rng(11)
    rows = 120_000
    table = pa.table({"a": rng.integers(-(2**63), 2**63 - 1, rows, dtype=np.int64, endpoint=True),
                      "b": pa.array(rng.integers(0, 9, rows), pa.int32()),
                      "t": pa.array(rng.integers(0, 10**12, rows), pa.timestamp("ms"))})
    compiled = {keys: partition_ids(table, list(keys), 5) for keys in (("a",), ("b", "a"), ("t", "b"))}
    monkeypatch.setattr(hashing, "_COUNTING_SORT_ROWS", 10**9)  # the numpy path for any size
    for keys, ids in compiled.items():
        assert np.array_equal(ids, partition_ids(table, list(keys), 5)), keys  # a key goes to one reducer


def test_sorting_by_integer_keys_equals_a_python_sort() -> None:
    from engine.common.packed_keys import sort_by_keys

    rng = np.random.default_rng(13)
    rows = 110_000
    table = pa.table({"a": rng.integers(-50, 50, rows), "b": pa.array(rng.integers(-3, 3, rows), pa.int16()),
                      "row": np.arange(rows)})
    got = sort_by_keys(table, ["a", "b"])
    expected = sorted(zip(table.column("a").to_pylist(), table.column("b").to_pylist(), range(rows)))
    assert list(zip(*(got.column(c).to_pylist() for c in ("a", "b", "row")))) == expected  # ties keep row order
    wide = pa.table({"a": pa.array([2**62, -(2**62)] * 60_000, pa.int64()), "b": pa.array([1, 0] * 60_000, pa.int64())})
    assert sort_by_keys(wide, ["a", "b"]).column("a")[0].as_py() == -(2**62)  # too wide to pack: Arrow's sort


def test_distinct_keys_of_a_reduce_equal_a_python_set() -> None:
    import engine

    rng = np.random.default_rng(17)
    rows = 130_000
    table = pa.table({"minute": rng.integers(0, 300, rows), "user": pa.array(rng.integers(0, 900, rows), pa.int32())})
    viewers = engine.GroupByAggregate(("minute", "user"))
    got = viewers.merge_partials([table.slice(0, 70_000), table.slice(70_000)])  # by one sort of packed keys
    pairs = list(zip(got.column("minute").to_pylist(), got.column("user").to_pylist()))
    assert pairs == sorted(set(zip(table.column("minute").to_pylist(), table.column("user").to_pylist())))
    assert got.schema == table.schema


def test_dates_and_times_are_left_to_arrow_and_timestamps_keep_their_type() -> None:
    import datetime

    dates = pa.table({"d": pa.array([datetime.date(2020, 1, 1)] * 3, pa.date32()), "n": pa.array([1, 2, 3], pa.int64())})
    assert group_by_int_keys(dates, ["d"], [("n", "sum")]) is None
    stamps = pa.table({"t": pa.array([5, 5, 7], pa.timestamp("ms")), "n": pa.array([1, 2, 3], pa.int64())})
    got = group_by_int_keys(stamps, ["t"], [("n", "sum")])
    assert got is not None and got.schema.field("t").type == pa.timestamp("ms")
    assert got.column("n_sum").to_pylist() == [3, 3]
