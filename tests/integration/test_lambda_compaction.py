"""Compacted real-time views: answers stay exact and held state stays bounded (both executors).

Many ingest batches over the same few keys (advertisers, users, minutes), with re-sent
ids: every answer equals the plain-Python oracle (``jobs.adtech.oracle``) over the offsets
it reports, and the rows the speed layer holds (``state_size()``, summed over shards) never
exceed ``speed_chunks`` rows per view key, however many batches arrive.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.lambda_arch import LambdaOptions
from jobs.adtech import AdEventOracle, AdTech
from jobs.adtech.testing import BASE_MS, build_batch, check_answers

pytestmark = pytest.mark.integration

BATCHES, ROWS = 120, 40
KINDS = ("view", "view", "view", "click", "purchase")


def _batch(number: int) -> list[dict]:
    rows = []
    for n in range(ROWS):
        kind = KINDS[(number + n) % len(KINDS)]
        event = number * ROWS + n
        rows.append({"event_id": f"b{number}-{n}", "event_time": BASE_MS + (event * 7_919) % 180_000,
                     "event_type": kind, "user_id": event % 7, "ad_id": None if kind == "purchase" else event % 5,
                     "advertiser_id": (event // 3) % 5, "cost": 0.0 if kind == "purchase" else 0.25 * (event % 4),
                     "revenue": 2.5 if kind == "purchase" else 0.0})
    if number:  # a few re-sends of the previous batch
        rows += [dict(row) for row in _batch(number - 1)[:3]]
    return rows


def _keys(oracle: AdEventOracle) -> int:
    counts = {(row["advertiser_id"], row["event_time"] // 60_000) for row in oracle.rows}
    viewers = {(row["event_time"] // 60_000, row["user_id"]) for row in oracle.rows if row["event_type"] == "view"}
    return len(counts) + len(viewers)


def test_compacted_real_time_views_stay_exact_and_bounded(executor: str, tmp_path: Path) -> None:
    oracle = AdEventOracle(now_ms=BASE_MS)
    options = LambdaOptions(shards=2, batch_executor="inline", speed_chunks=3, event_time_window=None)
    sizes = []
    with AdTech.start(tmp_path, executor, options) as lam:
        for number in range(BATCHES):
            batch = build_batch(_batch(number))
            ack = lam.ingest(batch)
            assert (ack.accepted, ack.duplicates, ack.rejected) == tuple(oracle.ingest(batch).values())
            if number == BATCHES // 2:
                assert lam.recompute_batch() == len(oracle.rows)
            if number % 10 == 9:
                lam.wait_visible()
                check_answers(lam, oracle)
                state = lam.state_size()
                sizes.append(state["speed_rows"])
                assert state["speed_rows"] <= options.speed_chunks * _keys(oracle), state
                assert state["chunks"] <= options.speed_chunks * options.shards, state
                assert 0 < state["speed_bytes"] <= 64 * state["speed_rows"] + 1024 * state["chunks"], state
                assert state["dedup_entries"] == len(oracle.rows)  # one per stored id: all within the horizon
        assert lam.snapshot[1] == len(oracle.rows) > BATCHES * ROWS - 1
    # the stream is 40 times larger than the bound: compaction, not the stream, sets the size
    assert max(sizes) * 10 < len(oracle.rows)
