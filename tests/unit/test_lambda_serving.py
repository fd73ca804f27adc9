"""The serving layer's retries (``RetryPolicy``) and per-shard circuit breakers, with a fake
gather and an injectable clock: no Ray, no waiting."""

from __future__ import annotations

from typing import Any

import pytest

from engine.common.retry import RetryPolicy
from engine.errors import QueryFailedError
from engine.lambda_arch import Query
from engine.lambda_arch.errors import ShardUnavailableError, StaleSnapshotError
from engine.lambda_arch.serving import ServingLayer, ShardOutcome

pytestmark = pytest.mark.unit

COUNT = Query("count", lambda snapshot, request: 0, lambda replies, request: sum(replies), views=("v",))
TOTAL = Query("total", lambda snapshot, request: 0, lambda replies, request: sum(replies), views=("v",),
              batch_only=True)
NAMES = ["shard-0", "shard-1"]


class FakeShards:
    """Scripted shard behaviour: per shard "ok", "stale", "down" or "error"."""

    def __init__(self) -> None:
        self.behaviour = {name: "ok" for name in NAMES}
        self.messages: list[dict[str, Any]] = []
        self.probes: list[str] = []
        self.healthy = True

    def gather(self, message: dict[str, Any]) -> list[ShardOutcome]:
        self.messages.append(message)
        outcomes = []
        for index, name in enumerate(NAMES):
            kind = self.behaviour[name]
            if kind == "down":
                outcomes.append(ShardOutcome(name, failure="RayActorError: the actor died"))
            elif kind == "stale":
                outcomes.append(ShardOutcome(name, reply={"stale": "not applied yet"}))
            elif kind == "error":
                outcomes.append(ShardOutcome(name, reply={"error": "KeyError: 'x'"}))
            else:
                outcomes.append(ShardOutcome(name, reply={"reply": index + 1}))
        return outcomes

    def probe(self, name: str) -> bool:
        self.probes.append(name)
        return self.healthy


def _serving(shards: FakeShards, now: list[float], sleeps: list[float]) -> ServingLayer:
    retry = RetryPolicy(max_attempts=10, backoff="fixed", base_delay_s=0.01, jitter=0.0,
                        retry_on=(StaleSnapshotError, ShardUnavailableError))

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    serving = ServingLayer([COUNT, TOTAL], NAMES, shards.gather, batch_version=4, retry=retry, breaker_failures=3,
                           breaker_reset_s=30.0, probe=shards.probe, clock=lambda: now[0], sleep=sleep)
    serving.publish_speed(9)
    return serving


def test_stale_replies_are_retried_with_the_snapshot_of_the_moment() -> None:
    shards, now, sleeps = FakeShards(), [0.0], []
    serving = _serving(shards, now, sleeps)
    shards.behaviour["shard-1"] = "stale"
    original_gather = shards.gather

    def heal_after_two(message: dict[str, Any]) -> list[ShardOutcome]:
        outcomes = original_gather(message)
        if len(shards.messages) == 2:
            shards.behaviour["shard-1"] = "ok"
            serving.switch_batch(7)  # a blue-green switch between attempts
        return outcomes

    serving.set_gather(heal_after_two, shards.probe)
    answer = serving.query("count", {"a": 1})
    assert (answer.value, answer.batch_offset, answer.speed_offset) == (3, 7, 9)
    assert [(m["version"], m["speed_end"]) for m in shards.messages] == [(4, 9), (4, 9), (7, 9)]
    assert shards.messages[0]["request"] == {"a": 1} and sleeps == [0.01, 0.01]
    total = serving.query("total", {})  # batch only: the shards answer from W alone
    assert (total.batch_offset, total.speed_offset) == (7, 7) and shards.messages[-1]["speed_end"] == 7


def test_a_failing_shard_opens_its_breaker_then_queries_fail_fast_and_recover_half_open() -> None:
    shards, now, sleeps = FakeShards(), [0.0], []
    serving = _serving(shards, now, sleeps)
    shards.behaviour["shard-1"] = "down"
    with pytest.raises(QueryFailedError, match="view shard shard-1 is unavailable") as failure:
        serving.query("count", {})
    assert failure.value.shards == ["shard-1"]
    assert len(shards.messages) == 3  # breaker_failures attempts, then the open breaker stops the retries
    assert serving.breakers.states() == {"shard-0": "closed", "shard-1": "open"}
    with pytest.raises(QueryFailedError, match="shard-1 .*circuit breaker is open"):
        serving.query("count", {})
    assert len(shards.messages) == 3 and shards.probes == []  # failed fast: no shard was asked
    now[0] += 31.0
    shards.healthy = False  # the probe says no: stays open for another timeout
    with pytest.raises(QueryFailedError, match="circuit breaker is open"):
        serving.query("count", {})
    assert shards.probes == ["shard-1"] and len(shards.messages) == 3
    now[0] += 31.0
    shards.healthy, shards.behaviour["shard-1"] = True, "ok"  # the shard is back
    assert serving.query("count", {}).value == 3  # half-open: the trial query succeeds and closes it
    assert serving.breakers.states() == {"shard-0": "closed", "shard-1": "closed"}
    assert (serving.answered, serving.failed) == (1, 3)


def test_a_shard_that_fails_only_transiently_is_retried_to_an_answer() -> None:
    shards, now, sleeps = FakeShards(), [0.0], []
    serving = _serving(shards, now, sleeps)
    shards.behaviour["shard-0"] = "down"
    original_gather = shards.gather

    def back_on_second(message: dict[str, Any]) -> list[ShardOutcome]:
        outcomes = original_gather(message)
        shards.behaviour["shard-0"] = "ok"
        return outcomes

    serving.set_gather(back_on_second)
    assert serving.query("count", {}).value == 3
    assert len(shards.messages) == 2 and serving.breakers.get("shard-0").consecutive_failures == 0


def test_a_handler_error_is_raised_at_once_naming_the_shard() -> None:
    shards, now, sleeps = FakeShards(), [0.0], []
    serving = _serving(shards, now, sleeps)
    shards.behaviour["shard-0"] = "error"
    with pytest.raises(QueryFailedError, match="query 'count' failed on shard-0: KeyError") as failure:
        serving.query("count", {})
    assert failure.value.shards == ["shard-0"] and len(shards.messages) == 1 and sleeps == []
    assert serving.breakers.states()["shard-0"] == "closed"  # a bug in the handler is not a shard failure


def test_stale_replies_that_never_end_give_a_clear_error() -> None:
    shards, now, sleeps = FakeShards(), [0.0], []
    serving = _serving(shards, now, sleeps)
    shards.behaviour["shard-0"] = "stale"
    with pytest.raises(QueryFailedError, match="no consistent snapshot after 10 attempt"):
        serving.query("count", {})
    with pytest.raises(ValueError, match="older than the served view"):
        serving.switch_batch(2)
