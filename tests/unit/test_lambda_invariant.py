"""The Lambda invariant, inline executor: every answer equals the oracle over its offsets.

Random event streams (re-sent ids, late and malformed rows) are ingested batch by batch;
batch recomputations happen at random points; every query is checked after every batch,
and again after the directory is closed and reopened.  Also: the handle's shape, ingest
rate limiting and the spec's errors.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.lambda_arch as lam_api
from datasets.adevents import AdEventSpec, generate_events
from engine.common.rate_limit import RateLimiter
from engine.errors import NotConnectedError, QueryFailedError, RateLimitedError, SpecError
from engine.lambda_arch import LambdaOptions
from engine.runtime.handle import Handle
from engine.runtime.run import run
from jobs.adtech import AdEventOracle, AdTech, adtech_architecture
from jobs.adtech.testing import BASE_MS, build_batch, check_answers, draw_stream

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
    options = LambdaOptions(shards=shards, dedup_horizon_hours=2)
    oracle = AdEventOracle(2 * 3_600_000)
    with AdTech.start(directory, "inline", options) as lam:
        for batch, recompute in zip(batches, recompute_after):
            ack = lam.ingest(batch)
            expected = oracle.ingest(batch)
            assert (ack.accepted, ack.duplicates, ack.rejected) == tuple(expected.values())
            check_answers(lam, oracle)
            if recompute:
                version = lam.recompute_batch()
                assert version == len(oracle.rows)
                check_answers(lam, oracle)
    with AdTech.start(directory, "inline", options) as reopened:  # the driver exited; reopen
        assert reopened.end_offset == len(oracle.rows)
        answers = check_answers(reopened, oracle)
        assert answers["ads_shown_5"].speed_offset == len(oracle.rows)


def test_generated_stream_with_duplicates_late_and_malformed_rows(tmp_path: Path) -> None:
    events = generate_events(AdEventSpec(events=6_000, users=300, advertisers=12, span_hours=6, seed=11,
                                         duplicate_rate=0.05, late_rate=0.05, malformed_rate=0.01))
    oracle = AdEventOracle()
    with AdTech.start(tmp_path, "inline", LambdaOptions(shards=3)) as lam:
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
        assert lam.rejected_rows().num_rows == totals["rejected"]
        letters = lam.log.dead_letters.list("ingest")
        assert set(letters.column("pattern").to_pylist()) == {"lambda"}
        roi = lam.roi(advertiser_id=3)
        assert roi.extra["table"].column("advertiser_id").to_pylist() == [3]
        counters = lam.counters()
        assert (counters["duplicates"], counters["rejected"], counters["batch_recomputations"]) == (
            totals["duplicates"], totals["rejected"], 3)


def test_speed_layer_rebuild_from_the_log_keeps_answers_exact(tmp_path: Path) -> None:
    events = generate_events(AdEventSpec(events=3_000, users=200, advertisers=8, span_hours=3, seed=5))
    oracle = AdEventOracle()
    with AdTech.start(tmp_path, "inline", LambdaOptions(shards=2)) as lam:
        for start in range(0, 2_000, 500):
            lam.ingest(events.slice(start, 500))
            oracle.ingest(events.slice(start, 500))
        lam.recompute_batch()
        lam.ingest(events.slice(2_000, 1_000))
        oracle.ingest(events.slice(2_000, 1_000))
        lam.rebuild_speed_layer()
        answers = check_answers(lam, oracle)
        assert answers["ads_shown_5"].speed_offset == len(oracle.rows)
        assert lam.counters()["speed_rebuilds"] == 1


def test_the_deployment_is_a_handle_and_queries_by_name(tmp_path: Path) -> None:
    handle = run(adtech_architecture(tmp_path, LambdaOptions(shards=2)), "inline")
    assert isinstance(handle, Handle)
    assert handle.status()["state"] == "running" and handle.progress() is None and not handle.done()
    handle.ingest(build_batch([{"event_id": "a", "event_time": BASE_MS, "event_type": "view", "user_id": 1,
                                "ad_id": 1, "advertiser_id": 2, "cost": 0.5, "revenue": 0.0}]))
    answer = handle.query("ads_shown", hours=1, top_k=1)
    assert (answer.value, answer.speed_offset, answer.extra["top"].to_pylist()) == (
        1, 1, [{"advertiser_id": 2, "views": 1}])
    assert handle.metrics()["queries"]["answered"] == 1
    with pytest.raises(QueryFailedError, match="unknown query 'nope'"):
        handle.query("nope")
    with pytest.raises(TypeError, match="unexpected argument"):
        handle.query("ads_shown", weeks=2)
    with pytest.raises(ValueError, match="at least 1 minute"):  # prepare runs on the caller's side
        handle.query("active_viewers", minutes=-3)
    with pytest.raises(lam_api.QueryFailedError, match="failed on shard-0: ValueError: invalid literal"):
        handle.query("ads_shown", advertiser_id="x")  # the shards' handler raises: not retried
    assert handle.counters()["queries_failed"] == 2
    handle.cancel()
    assert handle.done() and handle.result(timeout_s=0)["state"] == "cancelled"
    with pytest.raises(RuntimeError, match="closed"):
        handle.ingest(build_batch([]))


def _views_batch(count: int, first: int = 0) -> pa.Table:
    return build_batch([{"event_id": f"r{first + i}", "event_time": BASE_MS + i, "event_type": "view", "user_id": i,
                         "ad_id": 1, "advertiser_id": 1, "cost": 0.0, "revenue": 0.0} for i in range(count)])


def test_ingest_rate_limit_drop_mode_refuses_and_stores_nothing(tmp_path: Path) -> None:
    limiter = RateLimiter(global_rate_per_s=None, per_client_rate_per_s=10.0, per_client_burst=10.0, mode="drop",
                          clock=lambda: 0.0)  # a frozen clock: no tokens come back
    with AdTech.start(tmp_path, "inline", LambdaOptions(shards=1, ingest_limiter=limiter)) as lam:
        assert lam.ingest(_views_batch(8), client_id="a").accepted == 8
        with pytest.raises(RateLimitedError, match="client 'a'"):
            lam.ingest(_views_batch(5, first=8), client_id="a")
        assert lam.end_offset == 8  # the refused batch was not stored
        assert lam.ingest(_views_batch(5, first=20), client_id="b").accepted == 5
        assert lam.ads_shown(hours=1).value == 13


def test_ingest_rate_limit_queue_mode_waits_for_tokens(tmp_path: Path) -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(global_rate_per_s=100.0, per_client_rate_per_s=None, global_burst=100.0, mode="queue",
                          clock=lambda: now[0], sleep=sleep)
    with AdTech.start(tmp_path, "inline", LambdaOptions(shards=1, ingest_limiter=limiter)) as lam:
        lam.ingest(_views_batch(100))
        assert waits == []
        lam.ingest(_views_batch(50, first=100))  # 50 tokens short: waits 0.5 s at 100 rows/s
        assert waits == [pytest.approx(0.5)]
        assert lam.end_offset == 150


def test_spec_errors_name_the_bad_part(tmp_path: Path) -> None:
    from jobs.adtech.app import CONTRACT
    from jobs.adtech.queries import ADS_SHOWN, ROI
    from jobs.adtech.views import ATTRIBUTION_VIEW, COUNTS_VIEW, VIEWS

    with pytest.raises(SpecError, match="reads the batch-only view 'attribution'"):
        lam_api.LambdaArchitecture(tmp_path, CONTRACT, VIEWS, [lam_api.Query(
            "bad", ROI.handler, ROI.aggregator, views=("attribution",))])
    with pytest.raises(SpecError, match="reads view 'viewers', which is not defined"):
        lam_api.LambdaArchitecture(tmp_path, CONTRACT, [COUNTS_VIEW, ATTRIBUTION_VIEW], [lam_api.Query(
            "bad", ADS_SHOWN.handler, ADS_SHOWN.aggregator, views=("viewers",))])
    with pytest.raises(SpecError, match="duplicate view name 'counts'"):
        lam_api.LambdaArchitecture(tmp_path, CONTRACT, [COUNTS_VIEW, COUNTS_VIEW], [ADS_SHOWN])
    with pytest.raises(SpecError, match="shard_by"):
        lam_api.View("v", COUNTS_VIEW.map, COUNTS_VIEW.combine, shard_by=("user_id",))
    with pytest.raises(SpecError, match="view name 'a/b'"):
        lam_api.View("a/b", COUNTS_VIEW.map, COUNTS_VIEW.combine, shard_by=("advertiser_id",))
    with pytest.raises(SpecError, match="shards must be an int >= 1"):
        LambdaOptions(shards=0)
    with pytest.raises(SpecError, match="neither resume"):
        run(adtech_architecture(tmp_path), "inline", resume=True)
    with pytest.raises(NotConnectedError, match="engine.connect"):  # no auto-connect, nothing opened
        run(adtech_architecture(tmp_path), "ray")
    with run(adtech_architecture(tmp_path), "inline") as deployment:  # the directory was not left locked
        assert deployment.end_offset == 0
