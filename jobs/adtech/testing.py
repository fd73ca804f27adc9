"""Random event streams and an answer checker, shared by the Lambda tests and the demo.

``draw_stream(draw, st)`` (inside a hypothesis ``@composite``) builds small event batches
with re-sent ids, late and malformed rows; ``check_answers`` compares every query of a
running ad-tech deployment (:class:`jobs.adtech.AdTech`) with :class:`AdEventOracle` over
the offsets each answer reports.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pyarrow as pa

from jobs.adtech.events import EVENT_SCHEMA
from jobs.adtech.oracle import AdEventOracle
from jobs.adtech.queries import window_minutes

BASE_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def build_batch(rows: list[dict[str, Any]]) -> pa.Table:
    """A table of ``EVENT_SCHEMA`` from row dicts (times in epoch ms)."""
    columns = {field.name: [row.get(field.name) for row in rows] for field in EVENT_SCHEMA}
    return pa.table({name: pa.array(values, EVENT_SCHEMA.field(name).type) for name, values in columns.items()},
                    schema=EVENT_SCHEMA)


def draw_stream(draw: Callable[[Any], Any], st: Any, max_events: int = 120) -> list[pa.Table]:
    """Draw a list of event batches (use inside a hypothesis ``@composite``)."""
    count = draw(st.integers(0, max_events))
    rows = []
    for _ in range(count):
        kind = draw(st.sampled_from(["view"] * 6 + ["click"] * 3 + ["purchase"] * 2 + ["hover"]))
        number = draw(st.integers(0, max(1, count)))  # a small id pool gives re-sent ids
        minute = draw(st.integers(0, 60 * 30))       # 30 h of event time: exercises the horizon
        row = {
            "event_id": f"e{number}",
            "event_time": BASE_MS + minute * 60_000 + draw(st.integers(0, 59_999)),
            "event_type": kind,
            "user_id": draw(st.integers(0, 6)),
            "ad_id": None if kind == "purchase" else draw(st.integers(0, 5)),
            "advertiser_id": draw(st.integers(0, 4)),
            "cost": 0.0 if kind == "purchase" else draw(st.sampled_from([0.0, 0.5, 1.25, 2.0, -1.0])),
            "revenue": draw(st.sampled_from([3.0, 10.5, 0.0])) if kind == "purchase" else 0.0,
        }
        if draw(st.integers(0, 30)) == 0:
            row[draw(st.sampled_from(["user_id", "event_time", "advertiser_id", "ad_id"]))] = None
        rows.append(row)
    sizes = []
    remaining = len(rows)
    while remaining > 0:
        size = draw(st.integers(1, max(1, remaining)))
        sizes.append(size)
        remaining -= size
    batches, start = [], 0
    for size in sizes:
        batches.append(build_batch(rows[start:start + size]))
        start += size
    return batches


def check_answers(lam: Any, oracle: AdEventOracle, as_of_ms: int | None = None) -> dict[str, Any]:
    """Assert every query answer equals the oracle's over the offsets it reports."""
    as_of = lam.latest_event_time_ms if as_of_ms is None else as_of_ms
    assert as_of == oracle.latest_event_ms() or as_of_ms is not None
    seen: dict[str, Any] = {}
    for minutes in (5, 90, 24 * 60):
        first, last = window_minutes(as_of, minutes)
        shown = lam.ads_shown(as_of=as_of, hours=minutes / 60, top_k=3)
        assert shown.batch_offset <= shown.speed_offset
        assert (shown.request["first_minute"], shown.request["last_minute"]) == (first, last)
        expected = oracle.ads_shown(shown.speed_offset, first, last)
        assert shown.value == expected, f"ads_shown({minutes} min) {shown} != {expected}"
        by_advertiser = oracle.views_by_advertiser(shown.speed_offset, first, last)
        top = sorted(by_advertiser.items(), key=lambda item: (-item[1], item[0]))[:3]
        got = [(row["advertiser_id"], row["views"]) for row in shown.extra["top"].to_pylist()]
        assert got == top, f"top-3 {got} != {top}"
        for advertiser in (0, 3):
            one = lam.ads_shown(as_of=as_of, hours=minutes / 60, advertiser_id=advertiser)
            assert one.value == oracle.ads_shown(one.speed_offset, first, last, advertiser)
        viewers = lam.active_viewers(as_of=as_of, minutes=minutes)
        assert viewers.value == oracle.active_viewers(viewers.speed_offset, first, last), \
            f"active_viewers({minutes}) {viewers} != {oracle.active_viewers(viewers.speed_offset, first, last)}"
        seen[f"ads_shown_{minutes}"] = shown
    roi = lam.roi()
    assert roi.speed_offset == roi.batch_offset
    expected_roi = oracle.roi(roi.batch_offset)
    table = {row["advertiser_id"]: row for row in roi.extra["table"].to_pylist()}
    assert set(table) == set(expected_roi), f"ROI advertisers {sorted(table)} != {sorted(expected_roi)}"
    for advertiser, (spend, revenue, value) in expected_roi.items():
        row = table[advertiser]
        assert math.isclose(row["spend"], spend, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(row["attributed_revenue"], revenue, rel_tol=1e-9, abs_tol=1e-9)
        assert (row["roi"] is None) == (value is None)
        if value is not None:
            assert math.isclose(row["roi"], value, rel_tol=1e-9, abs_tol=1e-9)
    total_spend = sum(spend for spend, _, _ in expected_roi.values())
    total_revenue = sum(revenue for _, revenue, _ in expected_roi.values())
    assert math.isclose(roi.extra["spend"], total_spend, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(roi.extra["attributed_revenue"], total_revenue, rel_tol=1e-9, abs_tol=1e-9)
    if total_spend == 0:
        assert roi.value is None
    else:
        assert math.isclose(roi.value, (total_revenue - total_spend) / total_spend, rel_tol=1e-9, abs_tol=1e-9)
    seen["roi"] = roi
    return seen
