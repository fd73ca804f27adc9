"""Scatter-gather on both executors (inline, and Ray shard hosts), checked against
plain-Python oracles."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
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


def sorted_x(table: pa.Table) -> list[int]:
    return sorted(table["x"].to_pylist())


def oracle_x(above: int, skip: tuple[int, ...] = ()) -> list[int]:
    """Plain Python: every x above ``above`` in the shards not in ``skip``."""
    return sorted(x for i, t in enumerate(SHARDS) if i not in skip for x in t["x"].to_pylist() if x > above)


NAMES = ["shard-0", "shard-1", "shard-2", "shard-3"]


@pytest.fixture(scope="module")
def module_ray(_shared_ray: None) -> object:
    """The shared runtime, for module-scoped fixtures (``ray_runtime`` is per-function;
    both connect to the same session cluster, ``connect`` being idempotent)."""
    from engine.cluster import connect

    return connect(num_cpus=2)


@pytest.fixture(scope="module")
def service(module_ray: object) -> Iterator[RayScatterGather]:
    spec = ScatterGather(SHARDS, rows_above, concat_replies(),
                         ScatterGatherOptions(deadline_s=2.0, hosts=2, warmup_request={"above": 0}))
    with engine.run(spec) as running:
        yield running


def test_exact_aggregate_with_all_shards(executor: str) -> None:
    spec = ScatterGather(SHARDS, rows_above, concat_replies(), ScatterGatherOptions(deadline_s=5.0))
    with engine.run(spec, executor) as running:
        result = running.gather({"above": 11})
    assert not result.partial and result.missing == [] and result.errors == {}
    assert result.answered == NAMES
    assert result.value["x"].to_pylist() == [x for t in SHARDS for x in t["x"].to_pylist() if x > 11]  # shard order


@pytest.mark.parametrize("hosts,local_channel", [(None, True), (1, False), (3, True), (3, False), (9, True)])
def test_shards_map_to_hosts_and_each_request_is_one_call_per_host(ray_runtime: object, hosts: int | None,
                                                                   local_channel: bool) -> None:
    spec = ScatterGather(SHARDS, rows_above, concat_replies(),
                         ScatterGatherOptions(deadline_s=5.0, hosts=hosts, local_channel=local_channel))
    expected_hosts = min(1 if hosts is None else hosts, len(SHARDS))  # default: one per node (one here)
    with engine.run(spec) as running:
        assert running.status()["hosts"] == expected_hosts
        # One node: every host is on the dispatcher's node, so each has a channel if asked.
        assert running.status()["local_channel_hosts"] == (expected_hosts if local_channel else 0)
        assert running.assignment == [NAMES[h::expected_hosts] for h in range(expected_hosts)]
        before = [ray.get(actor.describe.remote())["requests"] for actor in running.actors]
        for above in (-1, 12, 31):
            result = running.gather({"above": above})
            assert not result.partial and sorted_x(result.value) == oracle_x(above)
        after = [ray.get(actor.describe.remote()) for actor in running.actors]
        calls = running.counters()
    assert [a["requests"] - b for a, b in zip(after, before)] == [3] * expected_hosts
    assert (calls["channel_calls"], calls["ray_calls"]) == (
        (3 * expected_hosts, 0) if local_channel else (0, 3 * expected_hosts))
    assert sorted(name for a in after for name in a["shards"]) == NAMES


def x_total(shard: pa.Table, request: dict) -> int:
    """A scalar reply: the sum of x above request["above"] (not an Arrow table)."""
    return sum(x for x in shard["x"].to_pylist() if x > request["above"])


def test_what_the_local_channel_cannot_carry_goes_through_ray(ray_runtime: object) -> None:
    # Scalar replies are not one host_wire frame: the host says so over the channel and
    # the dispatcher asks again through Ray.  A tuple does not survive JSON: Ray at once.
    spec = ScatterGather(SHARDS, x_total, sum_replies(), ScatterGatherOptions(deadline_s=5.0, hosts=2))
    with engine.run(spec) as running:
        paths = [host.channel.address.path for host in running._hosts]
        assert running.gather({"above": 12}).value == sum(oracle_x(12))
        assert running.gather({"above": 12, "tag": (1, 2)}).value == sum(oracle_x(12))
        calls = running.counters()
        assert (calls["channel_calls"], calls["ray_calls"]) == (2, 2 + 2)
        assert all(Path(path).exists() for path in paths)
    assert not any(Path(path).parent.exists() for path in paths)  # close() removes the sockets


def test_a_stalled_shard_hides_only_itself_by_the_deadline(service: RayScatterGather) -> None:
    # shard-2 shares its host with shard-0, which must still answer.  Generous margins
    # (the host answers 0.4 s before the deadline): the suite runs on a busy 2-core machine.
    assert ["shard-0", "shard-2"] in service.assignment
    request = {"above": -1, "stall": 2, "stall_s": 20.0}
    result = service.gather(request, deadline_s=4.0)
    assert result.partial and result.done
    assert result.missing == ["shard-2"] and result.answered == ["shard-0", "shard-1", "shard-3"]
    assert result.errors == {}
    assert sorted_x(result.value) == oracle_x(-1, skip=(2,))


def test_min_replies_not_met_names_the_missing_shard(ray_runtime: object) -> None:
    spec = ScatterGather(SHARDS[:2], rows_above, concat_replies(),
                         ScatterGatherOptions(deadline_s=1.5, min_replies=2, hosts=1,
                                              warmup_request={"above": 0}))
    with engine.run(spec) as running:
        with pytest.raises(NotEnoughRepliesError, match="only 1 of 2 shards answered, 2 required; missing: shard-1$"):
            running.gather({"above": 0, "stall": 1, "stall_s": 10.0})


def test_min_replies_not_met_by_a_failing_shard(executor: str) -> None:
    spec = ScatterGather(SHARDS[:2], rows_above, concat_replies(),
                         ScatterGatherOptions(deadline_s=5.0, min_replies=2))
    with engine.run(spec, executor) as running:
        with pytest.raises(NotEnoughRepliesError, match=r"only 1 of 2 shards answered, 2 required; missing: shard-0 \(errors: shard-0: RuntimeError: injected failure"):
            running.gather({"above": 0, "fail": 0})


def test_a_failing_shard_is_reported_not_raised(executor: str) -> None:
    spec = ScatterGather(SHARDS, rows_above, concat_replies(), ScatterGatherOptions(deadline_s=5.0))
    with engine.run(spec, executor) as running:
        result = running.gather({"above": -1, "fail": 3})
    assert result.missing == ["shard-3"] and result.answered == NAMES[:3]
    assert "RuntimeError: injected failure" in result.errors["shard-3"]
    assert sorted_x(result.value) == oracle_x(-1, skip=(3,))


def big_rows(shard: pa.Table, request: pa.Table) -> pa.Table:
    """A large reply (~0.4 MB per shard): every value of the request table plus the shard id."""
    return pa.table({"shard": pa.array([shard["shard"][0].as_py()] * request.num_rows),
                     "v": request["v"]})


def test_large_requests_and_replies_go_by_reference(executor: str) -> None:
    rows = 140_000
    request = pa.table({"v": pa.array(np.arange(rows))})  # 1.1 MB: put once, not sent per host
    spec = ScatterGather(SHARDS, big_rows, concat_replies(), ScatterGatherOptions(deadline_s=30.0))
    with engine.run(spec, executor) as running:
        result = running.gather(request)
    assert not result.partial
    assert np.array_equal(result.value["shard"].to_numpy(), np.repeat(np.arange(4), rows))
    assert np.array_equal(result.value["v"].to_numpy(), np.tile(np.arange(rows), 4))


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


def test_request_ids_expire_after_the_ttl(executor: str) -> None:
    spec = ScatterGather(SHARDS[:1], rows_above, concat_replies(),
                         ScatterGatherOptions(result_ttl_s=0.3))
    with engine.run(spec, executor) as running:
        request_id = running.submit({"above": -1})
        done = running.wait(request_id, timeout_s=30)
        assert done.done and sorted_x(done.value) == SHARDS[0]["x"].to_pylist()
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


@pytest.fixture(scope="module", params=["inline", "ray"])
def search(request: pytest.FixtureRequest) -> Iterator[RayScatterGather]:
    """Top-k search over 5 shards (on one host per node for "ray")."""
    if request.param == "ray":
        request.getfixturevalue("module_ray")
    spec = build_search(split_shards(WORDS, 5), 5, ScatterGatherOptions(deadline_s=5.0))
    with engine.run(spec, request.param) as running:
        yield running


@settings(max_examples=15, deadline=None)
@given(prefix=st.text("abcde", max_size=3))
def test_topk_search_equals_the_plain_python_oracle(search: RayScatterGather, prefix: str) -> None:
    k = 5  # the k the search was built with
    result = search.gather({"prefix": prefix, "k": k})
    assert not result.partial and result.answered == [f"shard-{i}" for i in range(5)]
    rows = sorted(((w, c) for w, c in zip(WORDS["word"].to_pylist(),
                                          WORDS["count"].to_pylist()) if w.startswith(prefix)),
                  key=lambda row: (-row[1], row[0]))[:k]
    assert list(zip(result.value["word"].to_pylist(), result.value["count"].to_pylist())) == rows
