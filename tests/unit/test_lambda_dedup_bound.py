"""The dedup index stays exact and holds at most twice the events of the last 9/8 horizon.

Oracle: plain Python (a dict of id -> newest stored time and the list of stored events),
the rule of ``engine/lambda_arch/dedup.py``'s docstring.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.lambda_arch.dedup import DedupIndex, EventIds

pytestmark = pytest.mark.unit

HORIZON = 800


def _run(index: DedupIndex, batches: list[list[tuple[str, int]]]) -> None:
    newest: dict[str, int] = {}
    stored: list[int] = []
    watermark: int | None = None
    for rows in batches:
        ids = EventIds.of(pa.array([row[0] for row in rows], pa.string()))
        times = np.array([row[1] for row in rows], dtype=np.int64)
        duplicate = index.duplicates(ids, times)
        cutoff = None if watermark is None else watermark - index.horizon_ms
        expected = []
        for event_id, time in rows:
            seen = newest.get(event_id)
            is_duplicate = seen is not None and (cutoff is None or seen >= cutoff)
            expected.append(is_duplicate)
            if not is_duplicate:
                newest[event_id] = time if seen is None else max(seen, time)
                stored.append(time)
                watermark = time if watermark is None else max(watermark, time)
        assert duplicate.tolist() == expected
        keep = ~duplicate
        index.add(ids.take(keep), times[keep])
        if watermark is not None:
            recent = sum(1 for time in stored if time >= watermark - index.horizon_ms * 9 // 8)
            assert index.entries() <= 2 * recent


BATCHES = st.lists(st.lists(st.tuples(st.sampled_from([f"id{n}" for n in range(12)]), st.integers(0, 150)),
                            min_size=1, max_size=8), max_size=40)


@settings(max_examples=200, deadline=None)
@given(batches=BATCHES, step=st.integers(0, 120))
def test_dedup_is_exact_and_holds_only_the_last_horizon(batches: list[list[tuple[str, int]]], step: int) -> None:
    # event time moves on by ``step`` per batch, plus jitter (some rows late)
    shifted = [[(event_id, number * step + jitter) for event_id, jitter in rows] for number, rows in enumerate(batches)]
    _run(DedupIndex(HORIZON), shifted)


def test_a_long_stream_of_unique_ids_holds_a_bounded_index() -> None:
    index = DedupIndex(10_000)
    sizes = []
    for batch in range(400):  # 400 batches of 1,000 unique ids, 1 s of event time each
        ids = EventIds.of(pa.array([f"b{batch}-{n}" for n in range(1_000)], pa.string()))
        times = np.full(1_000, batch * 1_000, dtype=np.int64) + np.arange(1_000)
        assert not index.duplicates(ids, times).any()
        index.add(ids, times)
        sizes.append(index.entries())
    # twice the last 10 s (and an eighth) of event time: at most 2 x 12 batches of 1,000
    assert max(sizes[50:]) <= 2 * 12_250
    assert sizes[-1] >= 10_000  # and the live ones are all there
