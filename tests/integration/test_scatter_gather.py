"""Scatter-gather on Ray shard actors, checked against the inline executor and oracles."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import ray
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.scatter_gather.ray_executor import RayScatterGather
from engine.scatter_gather import (NotEnoughRepliesError,
                                   RequestExpiredError, ScatterGather, ScatterGatherOptions,
                                   UnknownRequestError, concat_replies, sum_replies)
from jobs.topk_search import build_search, split_shards

pytestmark = pytest.mark.integration

# Test modules are not importable by Ray's worker processes: ship their functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SHARDS = [pa.table({"shard": [i] * (i + 2), "x": list(range(10 * i, 10 * i + i + 2))})
          for i in range(4)]


def rows_above(shard: pa.Table, request: dict) -> pa.Table:
    """Rows with x above request["above"]; the shard named in request["stall"] sleeps."""
    if request.get("stall") == shard["shard"][0].as_py():
        time.sleep(request["stall_s"])
    if request.get("fail") == shard["shard"][0].as_py():
        raise RuntimeError("injected failure")
    return shard.filter(pc.greater(shard["x"], request["above"]))


def gated_pieces(shard: pa.Table, request: dict) -> Iterator[pa.Table]:
    """Shard 1 reports its first row at once, the rest only after the gate file exists."""
    yield shard.slice(0, 1)
    if shard["shard"][0].as_py() == 1:
        gate = Path(request["gate"])
        give_up = time.monotonic() + 60
        while not gate.exists() and time.monotonic() < give_up:
            time.sleep(0.01)
    yield shard.slice(1)


INLINE_ORACLE = engine.run(ScatterGather(SHARDS, rows_above, concat_replies()), "inline")


def sorted_x(table: pa.Table) -> list[int]:
    return sorted(table["x"].to_pylist())


@pytest.fixture(scope="module")
def module_ray(_shared_ray: None) -> object:
    """The shared runtime, for module-scoped fixtures (``ray_runtime`` is per-function;
    both connect to the same session cluster, ``connect`` being idempotent)."""
    from engine.cluster import connect

    return connect(num_cpus=2)


@pytest.fixture(scope="module")
def service(module_ray: object) -> Iterator[RayScatterGather]:
    spec = ScatterGather(SHARDS, rows_above, concat_replies(),
                         ScatterGatherOptions(deadline_s=2.0, warmup_request={"above": 0}))
    with engine.run(spec) as running:
        yield running


def test_exact_aggregate_with_all_workers(service: RayScatterGather) -> None:
    result = service.gather({"above": 11})
    expected = INLINE_ORACLE.gather({"above": 11})
    assert not result.partial and result.missing == [] and result.errors == {}
    assert result.answered == ["shard-0", "shard-1", "shard-2", "shard-3"]
    assert result.value.to_pylist() == expected.value.to_pylist()  # worker order kept
    assert sorted_x(result.value) == [x for t in SHARDS for x in t["x"].to_pylist() if x > 11]


def test_a_stalled_worker_gives_a_partial_result_by_the_deadline(
        service: RayScatterGather) -> None:
    # Generous margins: the suite runs on a busy 2-core machine.
    request = {"above": -1, "stall": 2, "stall_s": 10.0}
    result = service.gather(request, deadline_s=1.5)
    assert result.partial and result.done
    assert result.missing == ["shard-2"] and "shard-2" not in result.answered
    assert result.errors == {}
    others = [x for t in SHARDS if t["shard"][0].as_py() != 2 for x in t["x"].to_pylist()]
    assert sorted_x(result.value) == sorted(others)


def test_min_replies_not_met_names_the_missing_worker(ray_runtime: object) -> None:
    spec = ScatterGather(SHARDS[:2], rows_above, concat_replies(),
                         ScatterGatherOptions(deadline_s=1.5, min_replies=2,
                                              warmup_request={"above": 0}))
    with engine.run(spec) as running:
        with pytest.raises(NotEnoughRepliesError, match="only 1 of 2 shards answered, 2 required; missing: shard-1$"):
            running.gather({"above": 0, "stall": 1, "stall_s": 10.0})


def test_a_failing_worker_is_reported_not_raised(service: RayScatterGather) -> None:
    result = service.gather({"above": -1, "fail": 3})
    assert result.missing == ["shard-3"]
    assert "RuntimeError: injected failure" in result.errors["shard-3"]
    assert sorted_x(result.value) == sorted(x for t in SHARDS[:3] for x in t["x"].to_pylist())


def test_long_running_requests_by_id(ray_runtime: object, tmp_path: Path) -> None:
    spec = ScatterGather(SHARDS, gated_pieces, sum_replies("x"),
                         ScatterGatherOptions(result_ttl_s=30))
    with engine.run(spec) as running:
        gate = tmp_path / "gate"
        request_id = running.submit({"gate": str(gate)})
        first = running.poll(request_id)
        assert first.request_id == request_id and not first.done  # shard-1 is gated
        # Shards 0, 2, 3 finish; shard-1 reports its first piece and waits on the gate.
        result = running.wait(request_id, timeout_s=0.2)
        give_up = time.monotonic() + 60
        while result.answered != ["shard-0", "shard-2", "shard-3"] or result.value != (
                sum(sum(t["x"].to_pylist()) for i, t in enumerate(SHARDS) if i != 1)
                + SHARDS[1]["x"][0].as_py()):
            assert time.monotonic() < give_up, result
            result = running.wait(request_id, timeout_s=0.2)
        assert result.partial and not result.done and result.missing == ["shard-1"]
        gate.write_text("go")
        final = running.wait(request_id, timeout_s=60)
        assert final.done and not final.partial and final.request_id == request_id
        assert final.value == sum(sum(t["x"].to_pylist()) for t in SHARDS)
        assert running.poll(request_id).value == final.value  # still there until expiry
        with pytest.raises(UnknownRequestError, match="unknown request id 'nope'"):
            running.poll("nope")


def test_request_ids_expire_after_the_ttl(ray_runtime: object) -> None:
    spec = ScatterGather(SHARDS[:1], rows_above, concat_replies(),
                         ScatterGatherOptions(result_ttl_s=0.3))
    with engine.run(spec) as running:
        request_id = running.submit({"above": -1})
        assert running.wait(request_id, timeout_s=30).done
        time.sleep(0.4)
        with pytest.raises(RequestExpiredError, match=f"{request_id}.*expired"):
            running.poll(request_id)


@ray.remote(num_cpus=0)
class CounterShard:
    """A user-supplied worker: only the documented ``handle(request)`` method."""

    def __init__(self, base: int) -> None:
        self.base = base

    def handle(self, request: dict) -> int:
        return self.base * request["times"]


def test_user_supplied_actors(ray_runtime: object) -> None:
    actors = [CounterShard.remote(base) for base in (1, 2, 3)]
    ray.get([actor.handle.remote({"times": 0}) for actor in actors])  # started
    running = RayScatterGather.from_actors(actors, sum_replies(), names=["a", "b", "c"])
    result = running.gather({"times": 10})
    assert result.value == 60 and result.answered == ["a", "b", "c"]
    request_id = running.submit({"times": 2})
    assert running.wait(request_id, timeout_s=30).value == 12
    running.close()  # leaves user actors alone
    assert ray.get(actors[0].handle.remote({"times": 1})) == 1
    for actor in actors:
        ray.kill(actor)


WORDS = pa.table({
    "word": [f"{a}{b}{c}" for a in "abc" for b in "abcd" for c in "abcde"],
    "count": [(i * 7919) % 23 for i in range(60)]})


@pytest.fixture(scope="module")
def search(module_ray: object) -> Iterator[RayScatterGather]:
    spec = build_search(split_shards(WORDS, 3), 5, ScatterGatherOptions(deadline_s=5.0))
    with engine.run(spec) as running:
        yield running


@settings(max_examples=15, deadline=None)
@given(prefix=st.text("abcde", max_size=3))
def test_topk_search_on_ray_equals_inline_and_oracle(search: RayScatterGather,
                                                     prefix: str) -> None:
    k = 5  # the k the search was built with
    request = {"prefix": prefix, "k": k}
    result = search.gather(request)
    assert not result.partial
    ray_value = result.value
    inline_value = engine.run(build_search(split_shards(WORDS, 3), k), "inline").gather(request).value
    rows = sorted(((w, c) for w, c in zip(WORDS["word"].to_pylist(),
                                          WORDS["count"].to_pylist()) if w.startswith(prefix)),
                  key=lambda row: (-row[1], row[0]))[:k]
    assert ray_value.to_pylist() == inline_value.to_pylist()
    assert list(zip(ray_value["word"].to_pylist(), ray_value["count"].to_pylist())) == rows
