"""The long-stream tally oracle gives the row oracle's answers over every stored row."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.adtech.oracle import AdEventOracle, AdEventTally
from jobs.adtech.testing import BASE_MS, draw_stream

pytestmark = pytest.mark.unit


@st.composite
def _stream(draw: st.DrawFn) -> list[pa.Table]:
    return draw_stream(draw, st, max_events=80)


@settings(max_examples=80, deadline=None)
@given(batches=_stream(), horizon_minutes=st.sampled_from([1, 30, 600]))
def test_the_tally_answers_like_the_row_oracle(batches: list[pa.Table], horizon_minutes: int) -> None:
    rows, tally = AdEventOracle(horizon_minutes * 60_000), AdEventTally(horizon_minutes * 60_000)
    for batch in batches:
        assert tally.ingest(batch) == rows.ingest(batch)
    assert tally.stored == len(rows.rows)
    for first, last in [(0, 10**9), (BASE_MS // 60_000, BASE_MS // 60_000 + 90), (BASE_MS // 60_000 + 600, 10**9)]:
        end = tally.stored
        assert tally.ads_shown(end, first, last) == rows.ads_shown(end, first, last)
        assert tally.ads_shown(end, first, last, 3) == rows.ads_shown(end, first, last, 3)
        assert tally.views_by_advertiser(end, first, last) == rows.views_by_advertiser(end, first, last)
        assert tally.active_viewers(end, first, last) == rows.active_viewers(end, first, last)
    if tally.stored:
        with pytest.raises(ValueError, match="over all"):
            tally.ads_shown(tally.stored - 1, 0, 10**9)
