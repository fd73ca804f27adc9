"""Integration tests: both executors (the ``executor`` fixture) against plain-Python oracles,
and what only the Ray executor has (replica processes, autoscaling under real backlog)."""

from __future__ import annotations

import json
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
from engine import ParquetSink, TextSource
from engine.common.dead_letters import DeadLetterStore
from engine.common.retry import RetryPolicy
from engine.errors import ResultTimeoutError, TransientError
from engine.pipeline.replica import release_idle_replicas
from engine.pipeline.spec import SinkBreakerPolicy

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


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(st.lists(st.tuples(st.integers(0, 5), st.integers(-50, 50)), min_size=0, max_size=30), min_size=1, max_size=8),
    replicas=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2)),
    keyed=st.booleans(),
    ordered=st.booleans(),
    chaining=st.booleans(),
)
def test_result_equals_the_oracle(
    executor: str, batches: list[list[tuple[int, int]]], replicas: tuple[int, int, int], keyed: bool, ordered: bool,
    chaining: bool,
) -> None:
    tables = [pa.table({"k": pa.array([k for k, _ in b], pa.int64()), "x": pa.array([x for _, x in b], pa.int64())}) for b in batches]
    stages = [
        Stage("double", add_double, replicas=replicas[0]),
        Stage("drop3", keep_not_multiple_of_3, replicas=replicas[1], key="k" if keyed else None),
        Stage("explode", explode_twice, replicas=replicas[2], key="k" if keyed else None),
    ]
    options = PipelineOptions(ordered=ordered, chaining=chaining)
    result = engine.run(Pipeline(IteratorSource(tables), stages, CollectSink(), options), executor).result(timeout_s=120)
    kept = sum(1 for b in batches for _, x in b if x % 3 != 0)
    assert [result.metrics[s].rows_out for s in ("double", "drop3", "explode")] == [
        sum(len(b) for b in batches), kept, 2 * kept]  # chained or not, each stage counts its own rows
    oracle = sorted(
        (k, x, sign * 2 * x) for b in batches for k, x in b if x % 3 != 0 for sign in (1, -1)
    )
    assert rows(result.table, ["k", "x", "y"]) == oracle
    assert result.metrics["sink"].rows_in == len(oracle)
    assert result.metrics["double"].rows_in == result.metrics["source"].rows_out == sum(len(b) for b in batches)
    if ordered and result.table is not None:
        # Per key, rows arrive in source order: each batch's rows of the key, then their negated copies.
        for key in set(result.table["k"].to_pylist()):
            got = result.table.filter(pc.equal(result.table["k"], key))
            expected = [(x, sign * 2 * x) for b in batches for sign in (1, -1) for k, x in b if k == key and x % 3 != 0]
            assert list(zip(got["x"].to_pylist(), got["y"].to_pylist())) == expected


def test_slow_sink_blocks_the_producer_and_pipes_stay_bounded(executor: str) -> None:
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
    result = engine.run(Pipeline(IteratorSource(generate()), stages, CallbackSink(slow_sink), options), executor).result(timeout_s=120)

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


def test_failing_rows_go_to_dead_letters_and_replay_delivers_them_once(executor: str, tmp_path: Path) -> None:
    table = pa.table({"x": pa.array(range(3000), pa.int64())})
    pipeline = Pipeline(
        TableSource(table, batch_rows=250),
        [Stage("double", add_double, replicas=2), Stage("check", fail_on_chosen_rows, retry=NO_WAIT, replicas=2)],
        CollectSink(),
        PipelineOptions(dead_letter_dir=str(tmp_path)),
    )
    result = engine.run(pipeline, executor).result(timeout_s=120)
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


def test_live_feed_metrics_while_running_scaling_and_close(executor: str) -> None:
    feed = LiveFeed(capacity=4)
    handle = engine.run(Pipeline(feed, [Stage("slow", slow_identity), Stage("double", add_double)], CollectSink()), executor)

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
    # Ray only: the inline executor runs each call before reading more, so its pipes never back up.
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


def test_cancel_stops_an_endless_feed(executor: str) -> None:
    feed = LiveFeed(capacity=2)
    handle = engine.run(Pipeline(feed, [Stage("slow", slow_identity)], CollectSink()), executor)
    handle.push(pa.table({"x": [1]}))
    handle.cancel()
    result = handle.result()
    assert result.status == "cancelled" and handle.done()
    assert handle.status()["state"] == "cancelled"
    with pytest.raises(RuntimeError, match="after close"):
        handle.push(pa.table({"x": [2]}))  # a cancelled run's feed refuses pushes loudly


def test_a_failing_sink_fails_the_run_with_its_name(executor: str) -> None:
    def broken(table: pa.Table) -> None:
        raise OSError("disk full")

    handle = engine.run(Pipeline(TableSource(pa.table({"x": [1, 2]})), [Stage("id", lambda b: b)], CallbackSink(broken)), executor)
    with pytest.raises(PipelineFailedError, match="sink CallbackSink failed.*disk full"):
        handle.result(timeout_s=60)
    assert handle.status()["state"] == "failed" and "disk full" in handle.status()["error"]


def test_close_drains_every_batch_read_and_stops_reading(executor: str) -> None:
    produced: list[int] = []

    def endless() -> Iterator[pa.Table]:
        i = 0
        while True:
            produced.append(i)
            yield pa.table({"x": pa.array([i], pa.int64())})
            i += 1

    handle = engine.run(Pipeline(IteratorSource(endless()), [Stage("slow", slow_identity), Stage("double", add_double)], CollectSink()), executor)
    deadline = time.monotonic() + 60
    while handle.metrics()["sink"].rows_in < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    result = handle.close(timeout_s=60)
    assert result.status == "drained" and handle.status()["status"] == "drained"
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


def test_a_missing_key_column_fails_the_run_naming_it(executor: str) -> None:
    stages = [Stage("double", add_double), Stage("keyed", lambda b: b, replicas=2, key="user")]
    handle = engine.run(Pipeline(TableSource(pa.table({"x": [1, 2]})), stages, CollectSink()), executor)
    with pytest.raises(PipelineFailedError, match="key column 'user' is not in the batch"):
        handle.result(timeout_s=60)


def test_bad_source_records_are_dead_lettered_and_never_fatal(executor: str, tmp_path: Path) -> None:
    lines = [b"good %d\n" % i if i % 4 else b"bad \xff %d\n" % i for i in range(40)]
    path = tmp_path / "in.txt"
    path.write_bytes(b"".join(lines))
    offsets = [sum(len(line) for line in lines[:i]) for i in range(40)]
    pipeline = Pipeline(TextSource(str(path), batch_size=64), [Stage("id", lambda b: b, replicas=2)], CollectSink(),
                        PipelineOptions(dead_letter_dir=str(tmp_path / "dead"), ordered=True))
    result = engine.run(pipeline, executor).result(timeout_s=120)
    assert result.table is not None and result.table["line"].to_pylist() == [l.decode() for l in lines if b"\xff" not in l]
    bad = [(offsets[i], line) for i, line in enumerate(lines) if b"\xff" in line]
    assert result.metrics["source"].dead_letters == len(bad) == 10
    store = DeadLetterStore(tmp_path / "dead")
    listing = store.list("read")
    assert set(listing["pattern"].to_pylist()) == {"pipeline"}
    origins = [json.loads(text) for text in listing["source"].to_pylist()]
    assert {o["file"] for o in origins} == {str(path)}
    assert sorted(offset for o in origins for offset in o["offsets"]) == [offset for offset, _ in bad]
    assert sorted(store.all_rows("read")["line"].to_pylist()) == sorted(line for _, line in bad)


class FlakySink:
    """A sink callback that fails transiently ``failures`` times, then works."""

    def __init__(self, failures: int) -> None:
        self.failures, self.attempts, self.rows = failures, 0, []

    def __call__(self, table: pa.Table) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise TransientError("service busy")
        self.rows += table["x"].to_pylist()


def test_the_sink_breaker_rides_out_a_flaky_sink_and_fails_a_dead_one(executor: str) -> None:
    flaky = FlakySink(failures=3)  # two open the breaker, the first trial fails, the second succeeds
    options = PipelineOptions(sink_breaker=SinkBreakerPolicy(failure_threshold=2, reset_timeout_s=0.005, half_open_trials=2))
    table = pa.table({"x": pa.array(range(6), pa.int64())})
    result = engine.run(Pipeline(TableSource(table, 2), [Stage("id", lambda b: b)], CallbackSink(flaky), options),
                        executor).result(timeout_s=60)
    assert sorted(flaky.rows) == list(range(6)) and flaky.attempts == 3 + 3
    assert result.metrics["sink"].rows_in == 6 and result.metrics["sink"].errors == 3
    dead = FlakySink(failures=10**9)
    handle = engine.run(Pipeline(TableSource(table, 2), [Stage("id", lambda b: b)], CallbackSink(dead), options), executor)
    with pytest.raises(PipelineFailedError, match=r"sink CallbackSink failed: its circuit breaker opened after 2 .*"
                                                  r"last error: TransientError: service busy"):
        handle.result(timeout_s=60)
    assert dead.attempts == 2 + 2 and dead.rows == []  # no hammering: the threshold, then one trial per opening


def test_a_sink_that_cannot_open_fails_the_run_through_result(executor: str, tmp_path: Path) -> None:
    regular_file = tmp_path / "not-a-directory"
    regular_file.write_text("x")
    handle = engine.run(Pipeline(TableSource(pa.table({"x": [1]})), [Stage("id", lambda b: b)],
                                 ParquetSink(str(regular_file))), executor)
    with pytest.raises(PipelineFailedError, match="sink ParquetSink failed to open"):
        handle.result(timeout_s=60)
    assert handle.done() and handle.status()["state"] == "failed"


def test_both_handles_have_one_shape(executor: str) -> None:
    feed = LiveFeed(capacity=4)
    handle = engine.run(Pipeline(feed, [Stage("double", add_double)], CollectSink()), executor)
    assert isinstance(handle, engine.Handle)
    handle.push(pa.table({"x": pa.array([1, 2, 3], pa.int64())}))
    assert handle.status() == {"state": "running", "executor": executor} and handle.progress() is None
    with pytest.raises(ResultTimeoutError):
        handle.result(timeout_s=0.05)
    result = handle.close(timeout_s=60)
    assert handle.status() == {"state": "succeeded", "executor": executor, "status": "completed"}
    assert handle.progress() == 1.0 and handle.done()
    assert set(handle.metrics()) == {"source", "double", "sink"} == set(result.metrics)
    counters = handle.counters()
    assert (counters["source.rows_out"], counters["double.rows_out"], counters["sink.rows_in"]) == (3, 3, 3)
    assert rows(result.table, ["x", "y"]) == [(1, 2), (2, 4), (3, 6)]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(0, 70), min_size=1, max_size=3),
    batch_rows=st.integers(1, 16),
    block_bytes=st.sampled_from([1, 200, 1000, 1 << 20]),
)
def test_table_batches_sent_as_windows_into_blocks_keep_every_row_in_order(
    executor: str, sizes: list[int], batch_rows: int, block_bytes: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On Ray, a TableSource's batches go to stage 0 as (block, offset, rows) windows into
    # blocks put into the object store; blocks of 1 byte to 1 MiB cut them at every size.
    import engine.pipeline.source_blocks as source_blocks

    monkeypatch.setattr(source_blocks, "BLOCK_BYTES", block_bytes)
    tables = [pa.table({"x": pa.array(range(100 * t, 100 * t + n), pa.int64()),
                        "s": pa.array([f"w{t}-{i}" * (i % 4) for i in range(n)])}) for t, n in enumerate(sizes)]
    stages = [Stage("double", add_double, replicas=2), Stage("drop3", keep_not_multiple_of_3)]
    pipeline = Pipeline(TableSource(tables, batch_rows), stages, CollectSink(), PipelineOptions(ordered=True))
    result = engine.run(pipeline, executor).result(timeout_s=120)
    oracle = [(x, s, 2 * x) for table in tables for x, s in zip(table["x"].to_pylist(), table["s"].to_pylist())
              if x % 3 != 0]
    got = [] if result.table is None else list(zip(*(result.table[c].to_pylist() for c in ("x", "s", "y"))))
    assert got == oracle
    assert result.metrics["source"].rows_out == sum(sizes)
