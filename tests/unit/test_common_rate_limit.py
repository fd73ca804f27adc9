"""Unit tests of the token bucket and rate limiter: refill timings, per-client isolation, drop vs queue."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import RateLimitedError

from engine.common.rate_limit import RateLimiter, TokenBucket, throttle_batches

from tests.fakes import FakeTime

pytestmark = pytest.mark.unit




def test_bucket_starts_full_and_refills_at_rate_up_to_burst() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate_per_s=2.0, burst=4.0, clock=t.clock, sleep=t.sleep)
    assert [bucket.try_acquire() for _ in range(5)] == [True] * 4 + [False]
    t.now += 0.25  # half a token
    assert not bucket.try_acquire()
    t.now += 0.25  # one token
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    t.now += 100.0  # refill is capped at burst
    assert bucket.tokens == pytest.approx(4.0)
    assert bucket.try_acquire(4.0)
    assert not bucket.try_acquire(0.5)


def test_acquire_waits_exactly_for_the_missing_tokens() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate_per_s=10.0, burst=1.0, clock=t.clock, sleep=t.sleep)
    bucket.acquire()
    assert t.sleeps == []
    bucket.acquire()
    bucket.acquire(3.0)  # larger than burst: waits for the deficit
    assert t.sleeps == pytest.approx([0.1, 0.3])


def test_acquire_reservations_queue_in_arrival_order() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate_per_s=1.0, burst=1.0, clock=t.clock, sleep=lambda s: None)
    waits = [bucket.reserve() for _ in range(4)]  # four callers arriving at once
    assert waits == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_acquire_times_out_without_taking_tokens() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate_per_s=1.0, burst=1.0, clock=t.clock, sleep=t.sleep)
    bucket.acquire()
    with pytest.raises(RateLimitedError, match="timeout") as info:
        bucket.acquire(timeout_s=0.5)
    assert info.value.retry_after_s == pytest.approx(1.0)
    assert t.sleeps == []
    t.now += 1.0
    assert bucket.try_acquire()  # the failed acquire reserved nothing


@pytest.mark.parametrize(
    "kwargs", [{"rate_per_s": 0, "burst": 1}, {"rate_per_s": 1, "burst": -1}, {"rate_per_s": float("inf"), "burst": 1}]
)
def test_invalid_buckets_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="TokenBucket"):
        TokenBucket(**kwargs)


def test_drop_mode_isolates_clients_and_names_the_client() -> None:
    t = FakeTime()
    limiter = RateLimiter(None, per_client_rate_per_s=1.0, per_client_burst=2.0, mode="drop", clock=t.clock, sleep=t.sleep)
    limiter.admit("alice")
    limiter.admit("alice")
    with pytest.raises(RateLimitedError, match="'alice'") as info:
        limiter.admit("alice")
    assert info.value.client_id == "alice" and info.value.scope == "client"
    limiter.admit("bob")  # bob has his own bucket
    limiter.admit("bob")
    t.now += 1.0
    limiter.admit("alice")
    assert t.sleeps == []
    assert limiter.admitted == 5 and limiter.dropped == 1


def test_drop_on_global_limit_refunds_the_client_bucket() -> None:
    t = FakeTime()
    limiter = RateLimiter(
        global_rate_per_s=1.0, per_client_rate_per_s=10.0, global_burst=2.0, per_client_burst=10.0,
        mode="drop", clock=t.clock, sleep=t.sleep,
    )
    limiter.admit("a")
    limiter.admit("b")
    with pytest.raises(RateLimitedError, match="global") as info:
        limiter.admit("a")
    assert info.value.scope == "global" and info.value.client_id == "a"
    assert limiter.client_bucket("a").tokens == pytest.approx(9.0)  # the dropped request was refunded


def test_queue_mode_waits_for_the_slower_of_client_and_global_limits() -> None:
    t = FakeTime()
    limiter = RateLimiter(
        global_rate_per_s=4.0, per_client_rate_per_s=1.0, global_burst=1.0, per_client_burst=1.0,
        mode="queue", clock=t.clock, sleep=t.sleep,
    )
    limiter.admit("a")
    assert t.sleeps == []
    limiter.admit("a")  # client bucket needs 1s, global 0.25s
    assert t.sleeps == pytest.approx([1.0])
    limiter.admit("b")  # fresh client; global refilled during the 1s wait
    assert t.sleeps == pytest.approx([1.0])
    limiter.admit("c")  # global needs 0.25s
    assert t.sleeps == pytest.approx([1.0, 0.25])


def test_queue_mode_timeout_raises_and_takes_nothing() -> None:
    t = FakeTime()
    limiter = RateLimiter(1.0, 1.0, mode="queue", queue_timeout_s=0.5, clock=t.clock, sleep=t.sleep)
    limiter.admit("a")
    with pytest.raises(RateLimitedError, match="'b'") as info:
        limiter.admit("b")  # b's own bucket is full, the global one is not
    assert info.value.scope == "global"
    assert limiter.client_bucket("b").tokens == pytest.approx(1.0)
    limiter.admit("b", timeout_s=2.0)
    assert t.sleeps == pytest.approx([1.0])


def test_unlimited_limiter_admits_everything() -> None:
    limiter = RateLimiter(None, None, mode="drop")
    for _ in range(1000):
        limiter.admit("x", tokens=1e6)
    assert limiter.client_bucket("x") is None and limiter.global_bucket is None


def test_invalid_limiter_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="mode"):
        RateLimiter(1.0, 1.0, mode="block")
    with pytest.raises(ValueError, match="TokenBucket"):
        RateLimiter(1.0, -2.0)
    with pytest.raises(ValueError, match="token count"):
        RateLimiter(1.0, 1.0).admit("a", tokens=-1)


def test_throttle_batches_queue_mode_paces_rows() -> None:
    t = FakeTime()
    limiter = RateLimiter(global_rate_per_s=100.0, per_client_rate_per_s=None, global_burst=100.0, clock=t.clock, sleep=t.sleep)
    batches = [pa.record_batch({"x": list(range(50))}) for _ in range(4)]
    out = list(throttle_batches(batches, limiter, "source-0"))
    assert [b.num_rows for b in out] == [50] * 4
    assert sum(t.sleeps) == pytest.approx(1.0)  # 200 rows at 100/s after a burst of 100


def test_throttle_batches_drop_mode_skips_and_reports() -> None:
    t = FakeTime()
    limiter = RateLimiter(None, per_client_rate_per_s=1.0, per_client_burst=2.0, mode="drop", clock=t.clock, sleep=t.sleep)
    dropped: list[int] = []
    batches = [pa.table({"i": [i]}) for i in range(5)]
    out = list(throttle_batches(batches, limiter, "p", cost="batches", on_drop=lambda b, e: dropped.append(b["i"][0].as_py())))
    assert [b["i"][0].as_py() for b in out] == [0, 1]
    assert dropped == [2, 3, 4]
    with pytest.raises(RateLimitedError):
        list(throttle_batches(batches, limiter, "p", cost="batches"))


@settings(max_examples=25, deadline=None)
@given(
    rate=st.floats(0.5, 50),
    burst=st.floats(1, 20),
    steps=st.lists(st.tuples(st.floats(0, 2), st.floats(0.1, 5), st.booleans()), min_size=1, max_size=40),
)
def test_bucket_never_hands_out_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: float, steps: list[tuple[float, float, bool]]
) -> None:
    t = FakeTime()
    bucket = TokenBucket(rate, burst, clock=t.clock, sleep=t.sleep)
    granted = 0.0
    for advance, tokens, blocking in steps:
        t.now += advance
        if blocking:
            bucket.acquire(tokens)
            granted += tokens
        elif bucket.try_acquire(tokens):
            granted += tokens
        assert granted <= burst + rate * t.now + 1e-6


@settings(max_examples=20, deadline=None)
@given(
    clients=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=60),
    gap=st.floats(0, 0.5),
)
def test_drop_limiter_admits_per_client_and_global_within_bounds(clients: list[str], gap: float) -> None:
    t = FakeTime()
    limiter = RateLimiter(5.0, 2.0, global_burst=5.0, per_client_burst=2.0, mode="drop", clock=t.clock, sleep=t.sleep)
    per_client: dict[str, int] = {}
    total = 0
    for client in clients:
        t.now += gap
        try:
            limiter.admit(client)
        except RateLimitedError:
            continue
        per_client[client] = per_client.get(client, 0) + 1
        total += 1
        assert per_client[client] <= 2.0 + 2.0 * t.now + 1e-9
        assert total <= 5.0 + 5.0 * t.now + 1e-9
