"""Ad-tech view functions: the combine contract, last-click attribution, ROI, windows."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.adtech.queries import window_minutes
from jobs.adtech.views import ATTRIBUTION_WINDOW_MS, COUNTS, VIEWERS, Attribution, attribute, roi_table, roi_values

pytestmark = pytest.mark.unit

_counts_rows = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 4),
                                  st.sampled_from([0.0, 0.25, 1.5])), max_size=40)


def _counts(rows: list[tuple[int, int, int, float]]) -> pa.Table:
    return pa.table({"advertiser_id": pa.array([r[0] for r in rows], pa.int64()),
                     "minute": pa.array([r[1] for r in rows], pa.int64()),
                     "views": pa.array([r[2] for r in rows], pa.int64()),
                     "spend": pa.array([r[3] for r in rows], pa.float64())})


def _as_dict(table: pa.Table) -> dict[tuple[int, int], tuple[int, float]]:
    return {(r["advertiser_id"], r["minute"]): (r["views"], r["spend"]) for r in table.to_pylist()}


@settings(max_examples=50, deadline=None)
@given(rows=_counts_rows, cut=st.integers(0, 40), second_cut=st.integers(0, 40))
def test_combine_contract_add_merge_finalize_equals_one_reduction(rows: list, cut: int, second_cut: int) -> None:
    combiner = COUNTS
    left, right = combiner.create(), combiner.create()
    for row in rows[:cut]:
        left = combiner.add(left, _counts([row]))
    for row in rows[cut:]:
        right = combiner.add(right, _counts([row]))
    partial = combiner.partial(combiner.merge([left, right]))  # what the batch layer stores
    later = combiner.merge([[partial], [combiner.to_partial(_counts(rows[:second_cut]))]])  # + a real-time part
    merged = combiner.finalize(combiner.merge([left, right]))
    expected: dict[tuple[int, int], tuple[int, float]] = {}
    for advertiser, minute, views, spend in rows:
        old = expected.get((advertiser, minute), (0, 0.0))
        expected[(advertiser, minute)] = (old[0] + views, old[1] + spend)
    got = _as_dict(merged)
    assert set(got) == set(expected)
    for key, (views, spend) in expected.items():  # pytest >= 9.2's approx refuses tuple values
        assert got[key][0] == views and got[key][1] == pytest.approx(spend)
    assert merged.schema == COUNTS.schema
    for advertiser, minute, views, spend in rows[:second_cut]:  # the real-time part adds to the batch part
        old = expected.get((advertiser, minute), (0, 0.0))
        expected[(advertiser, minute)] = (old[0] + views, old[1] + spend)
    got = _as_dict(combiner.finalize(later))
    assert set(got) == set(expected)
    for key, (views, spend) in expected.items():
        assert got[key][0] == views and got[key][1] == pytest.approx(spend)


def test_distinct_combiner_is_a_set_union() -> None:
    parts = [pa.table({"minute": pa.array([1, 1, 2], pa.int64()), "user_id": pa.array([7, 7, 7], pa.int64())}),
             pa.table({"minute": pa.array([2, 3], pa.int64()), "user_id": pa.array([7, 8], pa.int64())})]
    accumulator = VIEWERS.merge([VIEWERS.add(VIEWERS.create(), part) for part in parts])
    assert sorted(tuple(r.values()) for r in VIEWERS.finalize(accumulator).to_pylist()) == [(1, 7), (2, 7), (3, 8)]


_touches = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 60),
                              st.booleans(), st.sampled_from([1.0, 2.5, 10.0])), max_size=40)


@settings(max_examples=60, deadline=None)
@given(touches=_touches)
def test_attribution_matches_a_brute_force_reference(touches: list) -> None:
    hour = 3_600_000
    table = pa.table({"user_id": pa.array([t[0] for t in touches], pa.int64()),
                      "advertiser_id": pa.array([t[1] for t in touches], pa.int64()),
                      "time_ms": pa.array([t[2] * hour for t in touches], pa.int64()),
                      "is_click": pa.array([t[3] for t in touches], pa.bool_()),
                      "revenue": pa.array([0.0 if t[3] else t[4] for t in touches], pa.float64())})
    expected: dict[tuple[int, int], float] = {}
    for user, advertiser, time, is_click, revenue in touches:
        if is_click:
            continue
        if any(u == user and a == advertiser and c and 0 <= time * hour - t * hour <= ATTRIBUTION_WINDOW_MS
               for u, a, t, c, _ in touches):
            expected[(user, advertiser)] = expected.get((user, advertiser), 0.0) + revenue
    got = {(r["user_id"], r["advertiser_id"]): r["attributed_revenue"] for r in attribute(table).to_pylist()}
    assert got == pytest.approx(expected)
    split = Attribution()  # the batch-only combiner: partials of any split, finalized at once
    half = len(touches) // 2
    accumulator = split.merge([split.add([], table.slice(0, half)), split.add([], table.slice(half))])
    from_parts = {(r["user_id"], r["advertiser_id"]): r["attributed_revenue"]
                  for r in split.finalize(accumulator).to_pylist()}
    assert from_parts == pytest.approx(expected)


def test_roi_is_null_without_spend_and_window_is_minute_aligned() -> None:
    counts = pa.table({"advertiser_id": pa.array([1, 2], pa.int64()), "minute": pa.array([0, 0], pa.int64()),
                       "views": pa.array([1, 1], pa.int64()), "spend": pa.array([0.0, 4.0])})
    attribution = pa.table({"user_id": pa.array([1], pa.int64()), "advertiser_id": pa.array([2], pa.int64()),
                            "attributed_revenue": pa.array([10.0])})
    rows = roi_table(counts, attribution).to_pylist()
    assert rows[0]["roi"] is None and math.isclose(rows[1]["roi"], 1.5)
    assert roi_values(pa.array([1.0]), pa.array([0.0])).to_pylist() == [None]
    assert window_minutes(10 * 60_000 + 59_999, 5) == (6, 10)
    with pytest.raises(ValueError, match="at least 1 minute"):
        window_minutes(0, 0)
