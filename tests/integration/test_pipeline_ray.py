"""Integration tests: the Ray executor against the inline executor and a plain oracle."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import ray
import ray.cloudpickle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import (
    AutoscalePolicy,
    CallbackSink,
    CollectSink,
    IteratorSource,
    LiveFeed,
    Pipeline,
    PipelineFailedError,
    PipelineOptions,
    Stage,
    TableSource,
    replay_dead_letters,
)
from engine.common.dead_letters import DeadLetterStore
from engine.pipeline.replica import release_idle_replicas
from engine.common.retry import RetryPolicy

pytestmark = pytest.mark.integration

# Replica actors run in worker processes that cannot import this test module by name:
# ship its filter functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(autouse=True, scope="module")
def _no_idle_replicas_left_behind() -> Iterator[None]:
    """Other modules share the Ray runtime: kill this module's pooled replicas at the end."""
    yield
    if ray.is_initialized():
        release_idle_replicas()

NO_WAIT = RetryPolicy(max_attempts=2, base_delay_s=0.0, jitter=0.0)


def add_double(batch: pa.Table) -> pa.Table:
    return batch.append_column("y", pc.multiply(batch["x"], 2))


def keep_not_multiple_of_3(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.not_equal(pa.array(batch["x"].to_numpy() % 3), 0))


def explode_twice(batch: pa.Table) -> pa.Table:
    return pa.concat_tables([batch, batch.set_column(batch.schema.get_field_index("y"), "y", pc.negate(batch["y"]))])


def rows(table: pa.Table | None, columns: list[str]) -> list[tuple[object, ...]]:
    if table is None:
        return []
    return sorted(zip(*(table[c].to_pylist() for c in columns)))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.lists(st.tuples(st.integers(0, 5), st.integers(-50, 50)), min_size=0, max_size=30), min_size=1, max_size=8),
    replicas=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2)),
    keyed=st.booleans(),
    ordered=st.booleans(),
)
def test_ray_result_equals_local_and_oracle(
    ray_runtime: object, batches: list[list[tuple[int, int]]], replicas: tuple[int, int, int], keyed: bool, ordered: bool
) -> None:
    tables = [pa.table({"k": pa.array([k for k, _ in b], pa.int64()), "x": pa.array([x for _, x in b], pa.int64())}) for b in batches]
    stages = [
        Stage("double", add_double, replicas=replicas[0]),
        Stage("drop3", keep_not_multiple_of_3, replicas=replicas[1], key="k" if keyed else None),
        Stage("explode", explode_twice, replicas=replicas[2], key="k" if keyed else None),
    ]
    options = PipelineOptions(ordered=ordered)
    remote = engine.run(Pipeline(IteratorSource(tables), stages, CollectSink(), options)).result(timeout_s=120)
    local = engine.run(Pipeline(IteratorSource(tables), stages, CollectSink(), options), "inline").result()
    oracle = sorted(
        (k, x, sign * 2 * x) for b in batches for k, x in b if x % 3 != 0 for sign in (1, -1)
    )
    assert rows(remote.table, ["k", "x", "y"]) == rows(local.table, ["k", "x", "y"]) == oracle
    assert remote.metrics["sink"].rows_in == len(oracle)
    assert remote.metrics["double"].rows_in == sum(len(b) for b in batches)
    if ordered and remote.table is not None:
        # Per key, rows arrive in source order (x values of a key in the order they were fed).
        for key in set(remote.table["k"].to_pylist()):
            got = remote.table.filter(pc.equal(remote.table["k"], key))
            expected = local.table.filter(pc.equal(local.table["k"], key))
            assert got["x"].to_pylist() == expected["x"].to_pylist()


def test_slow_sink_blocks_the_producer_and_pipes_stay_bounded(ray_runtime: object) -> None:
    total_batches, capacity = 40, 2
    produced = {"n": 0}
    delivered: list[pa.Table] = []
    outstanding_seen: list[int] = []

    def generate() -> Iterator[pa.Table]:
        for i in range(total_batches):
            outstanding_seen.append(produced["n"] - len(delivered))
            produced["n"] += 1
            yield pa.table({"x": pa.array(range(i * 100, (i + 1) * 100), pa.int64())})

    def slow_sink(table: pa.Table) -> None:
        time.sleep(0.03)
        delivered.append(table)

    options = PipelineOptions(sink_capacity=capacity, source_capacity=capacity, inflight_per_replica=1)
    stages = [Stage("double", add_double, pipe_capacity=capacity), Stage("drop3", keep_not_multiple_of_3, pipe_capacity=capacity, replicas=2)]
    result = engine.run(Pipeline(IteratorSource(generate()), stages, CallbackSink(slow_sink), options)).result(timeout_s=120)

    # Everything in flight is in some bounded pipe: source pipe, the batch in the reader's
    # hand, each stage's pipe and the sink pipe.
    bound = 1 + capacity + capacity * len(stages) + capacity
    assert max(outstanding_seen) <= bound < total_batches
    for stage_id in ("double", "drop3", "sink"):
        assert 1 <= result.metrics[stage_id].max_pipe_depth <= capacity
    assert sorted(pa.concat_tables(delivered)["x"].to_pylist()) == [x for x in range(total_batches * 100) if x % 3]
    assert rows(pa.concat_tables(delivered), ["x", "y"]) == [(x, 2 * x) for x in range(total_batches * 100) if x % 3]


def fail_on_chosen_rows(batch: pa.Table) -> pa.Table:
    if pc.any(pc.equal(pa.array(batch["x"].to_numpy() % 97), 5)).as_py():
        raise ValueError("chosen row")
    return batch


def test_failing_rows_go_to_dead_letters_and_replay_delivers_them_once(ray_runtime: object, tmp_path: Path) -> None:
    table = pa.table({"x": pa.array(range(3000), pa.int64())})
    pipeline = Pipeline(
        TableSource(table, batch_rows=250),
        [Stage("double", add_double, replicas=2), Stage("check", fail_on_chosen_rows, retry=NO_WAIT, replicas=2)],
        CollectSink(),
        PipelineOptions(dead_letter_dir=str(tmp_path)),
    )
    result = engine.run(pipeline).result(timeout_s=120)
    bad = [x for x in range(3000) if x % 97 == 5]
    assert rows(result.table, ["x"]) == [(x,) for x in range(3000) if x % 97 != 5]
    assert result.metrics["check"].dead_letters == len(bad)
    store = DeadLetterStore(tmp_path)
    assert store.count("check") == len(bad)
    letter = store.rows(result.dead_letter_ids[0])
    assert letter.column_names == ["x", "y"]  # the data as the stage saw it

    first = replay_dead_letters(pipeline, "check", fixed_fn=lambda batch: batch)
    second = replay_dead_letters(pipeline, "check", fixed_fn=lambda batch: batch)
    assert rows(first.table, ["x", "y"]) == [(x, 2 * x) for x in bad]
    assert second.table is None and second.report.replayed_rows == 0
    assert store.count("check") == 0


def slow_identity(batch: pa.Table) -> pa.Table:
    time.sleep(0.02)
    return batch


def test_live_feed_metrics_while_running_scaling_and_close(ray_runtime: object) -> None:
    feed = LiveFeed(capacity=4)
    handle = engine.run(Pipeline(feed, [Stage("slow", slow_identity), Stage("double", add_double)], CollectSink()))

    def produce() -> None:
        for i in range(30):
            handle.push(pa.table({"x": pa.array([i], pa.int64())}))

    producer = threading.Thread(target=produce)
    producer.start()
    handle.scale("slow", 2)
    deadline = time.monotonic() + 60
    while handle.metrics()["sink"].rows_in < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    live = handle.metrics()
    assert live["sink"].rows_in >= 5 and live["slow"].replicas == 2
    assert not handle.done()
    producer.join()
    result = handle.close(timeout_s=60)
    assert result.status == "completed"
    assert rows(result.table, ["x", "y"]) == [(i, 2 * i) for i in range(30)]
    assert result.metrics["slow"].busy_s > 0 and result.metrics["slow"].batches_in == 30


def test_autoscaler_grows_a_backed_up_stage(ray_runtime: object) -> None:
    table = pa.table({"x": pa.array(range(60), pa.int64())})
    policy = AutoscalePolicy(min_replicas=1, max_replicas=2, high_water=2, low_water=0, sustain_s=0.05)
    handle = engine.run(Pipeline(TableSource(table, 1), [Stage("slow", slow_identity, autoscale=policy)], CollectSink()))
    seen = {1}
    while not handle.done():
        seen.add(handle.metrics()["slow"].replicas)
        time.sleep(0.01)
    result = handle.result()
    assert 2 in seen
    assert rows(result.table, ["x"]) == [(x,) for x in range(60)]


def test_cancel_stops_an_endless_feed(ray_runtime: object) -> None:
    feed = LiveFeed(capacity=2)
    handle = engine.run(Pipeline(feed, [Stage("slow", slow_identity)], CollectSink()))
    handle.push(pa.table({"x": [1]}))
    handle.cancel()
    result = handle.result()
    assert result.status == "cancelled" and handle.done()


def test_a_failing_sink_fails_the_run_with_its_name(ray_runtime: object) -> None:
    def broken(table: pa.Table) -> None:
        raise OSError("disk full")

    handle = engine.run(Pipeline(TableSource(pa.table({"x": [1, 2]})), [Stage("id", lambda b: b)], CallbackSink(broken)))
    with pytest.raises(PipelineFailedError, match="sink CallbackSink failed.*disk full"):
        handle.result(timeout_s=60)


def test_close_drains_every_batch_read_and_stops_reading(ray_runtime: object) -> None:
    produced: list[int] = []

    def endless() -> Iterator[pa.Table]:
        i = 0
        while True:
            produced.append(i)
            yield pa.table({"x": pa.array([i], pa.int64())})
            i += 1

    handle = engine.run(Pipeline(IteratorSource(endless()), [Stage("slow", slow_identity), Stage("double", add_double)], CollectSink()))
    deadline = time.monotonic() + 60
    while handle.metrics()["sink"].rows_in < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    result = handle.close(timeout_s=60)
    assert result.status == "drained"
    assert rows(result.table, ["x", "y"]) == [(i, 2 * i) for i in produced]  # nothing read was lost


def tag_with_process(batch: pa.Table) -> pa.Table:
    import os

    return batch.append_column("pid", pa.array([os.getpid()] * batch.num_rows, pa.int64()))


def test_key_affinity_sends_each_key_to_one_replica(ray_runtime: object) -> None:
    table = pa.table({"k": pa.array([i % 11 for i in range(2200)], pa.int64()), "x": pa.array(range(2200), pa.int64())})
    stages = [Stage("double", add_double, replicas=2), Stage("tag", tag_with_process, replicas=2, key="k")]
    result = engine.run(Pipeline(TableSource(table, 100), stages, CollectSink(), PipelineOptions(ordered=True))).result(timeout_s=120)
    assert result.table is not None and result.table.num_rows == 2200
    pids_per_key = result.table.group_by("k").aggregate([("pid", "count_distinct")])
    assert pids_per_key["pid_count_distinct"].to_pylist() == [1] * 11
    assert len(set(result.table["pid"].to_pylist())) == 2  # and both replicas got work
    for key in range(11):
        xs = result.table.filter(pc.equal(result.table["k"], key))["x"].to_pylist()
        assert xs == list(range(key, 2200, 11))  # source order per key


def test_a_missing_key_column_fails_the_run_naming_it(ray_runtime: object) -> None:
    stages = [Stage("double", add_double), Stage("keyed", lambda b: b, replicas=2, key="user")]
    handle = engine.run(Pipeline(TableSource(pa.table({"x": [1, 2]})), stages, CollectSink()))
    with pytest.raises(PipelineFailedError, match="key column 'user' is not in the batch"):
        handle.result(timeout_s=60)
