"""The Lambda invariant, inline executor: every answer equals the oracle over its offsets.

Random event streams (re-sent ids, late and malformed rows) are ingested batch by batch;
batch recomputations happen at random points; every query is checked after every batch,
and again after the directory is closed and reopened.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.adevents import AdEventSpec, generate_events
from engine.lambda_arch import AdEventOracle, LambdaArchitecture, LambdaOptions
from engine.lambda_arch.testing import check_answers, draw_stream

pytestmark = pytest.mark.unit


@st.composite
def _scenario(draw: st.DrawFn) -> tuple[list[pa.Table], list[bool], int]:
    batches = draw_stream(draw, st, max_events=80)
    recompute_after = [draw(st.booleans()) for _ in batches]
    shards = draw(st.integers(1, 3))
    return batches, recompute_after, shards


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(scenario=_scenario())
def test_answers_equal_the_oracle_before_and_after_batch_recomputations(
        tmp_path_factory: pytest.TempPathFactory, scenario: tuple[list[pa.Table], list[bool], int]) -> None:
    batches, recompute_after, shards = scenario
    directory = tmp_path_factory.mktemp("lambda")
    options = LambdaOptions(executor="inline", shards=shards, dedup_horizon_hours=2)
    oracle = AdEventOracle(2 * 3_600_000)
    with LambdaArchitecture(directory, options) as lam:
        for batch, recompute in zip(batches, recompute_after):
            ack = lam.ingest(batch)
            expected = oracle.ingest(batch)
            assert (ack.accepted, ack.duplicates, ack.rejected) == tuple(expected.values())
            check_answers(lam, oracle)
            if recompute:
                version = lam.recompute_batch()
                assert version == len(oracle.rows)
                check_answers(lam, oracle)
    with LambdaArchitecture(directory, options) as reopened:  # the driver exited; reopen
        assert reopened.log.end_offset == len(oracle.rows)
        answers = check_answers(reopened, oracle)
        assert answers["ads_shown_5"].speed_offset == len(oracle.rows)


def test_generated_stream_with_duplicates_late_and_malformed_rows(tmp_path: object) -> None:
    events = generate_events(AdEventSpec(events=6_000, users=300, advertisers=12, span_hours=6, seed=11,
                                         duplicate_rate=0.05, late_rate=0.05, malformed_rate=0.01))
    oracle = AdEventOracle()
    with LambdaArchitecture(tmp_path, LambdaOptions(executor="inline", shards=3)) as lam:
        totals = {"duplicates": 0, "rejected": 0}
        for number, start in enumerate(range(0, events.num_rows, 750)):
            batch = events.slice(start, 750)
            ack = lam.ingest(batch)
            oracle.ingest(batch)
            totals["duplicates"] += ack.duplicates
            totals["rejected"] += ack.rejected
            if number % 3 == 1:
                lam.recompute_batch()
            check_answers(lam, oracle)
        assert totals["duplicates"] > 0 and totals["rejected"] > 0
        assert lam.log.rejected_rows().num_rows == totals["rejected"]
        roi = lam.roi(advertiser_id=3)
        assert roi.extra["table"].column("advertiser_id").to_pylist() == [3]


def test_speed_layer_rebuild_from_the_log_keeps_answers_exact(tmp_path: object) -> None:
    events = generate_events(AdEventSpec(events=3_000, users=200, advertisers=8, span_hours=3, seed=5))
    oracle = AdEventOracle()
    with LambdaArchitecture(tmp_path, LambdaOptions(executor="inline", shards=2)) as lam:
        for start in range(0, 2_000, 500):
            lam.ingest(events.slice(start, 500))
            oracle.ingest(events.slice(start, 500))
        lam.recompute_batch()
        lam.ingest(events.slice(2_000, 1_000))
        oracle.ingest(events.slice(2_000, 1_000))
        lam.rebuild_speed_layer()
        answers = check_answers(lam, oracle)
        assert answers["ads_shown_5"].speed_offset == len(oracle.rows)
