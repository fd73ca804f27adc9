"""Unit tests: filters, sources, sinks, dead letters and replay on the inline executor."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import (
    CallbackSink,
    CollectSink,
    IteratorSource,
    LiveFeed,
    ParquetSink,
    ParquetSource,
    Pipeline,
    PipelineOptions,
    Stage,
    TableSource,
    TextSource,
    replay_dead_letters,
)
import json

from engine.pipeline.filtering import apply_filter
from engine.common.dead_letters import DeadLetterStore
from engine.errors import PipelineFailedError, RateLimitedError, ResultTimeoutError, TransientError
from engine.common.rate_limit import RateLimiter
from engine.common.retry import RetryPolicy

from tests.pipeline_filters import add_double, keep_even

pytestmark = pytest.mark.unit

NO_WAIT = RetryPolicy(max_attempts=3, base_delay_s=0.0, jitter=0.0)


def fail_on_multiples_of_7(batch: pa.Table) -> pa.Table:
    if pc.any(pc.equal(pa.array(batch["x"].to_numpy() % 7), 0)).as_py():
        raise ValueError("multiple of 7")
    return batch


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-1000, 1000), max_size=200), st.integers(1, 50))
def test_local_run_equals_plain_python(values: list[int], batch_rows: int) -> None:
    table = pa.table({"x": pa.array(values, pa.int64())})
    pipeline = Pipeline(TableSource(table, batch_rows), [Stage("double", add_double), Stage("even", keep_even)], CollectSink())
    result = engine.run(pipeline, "inline").result()
    expected = [(x, 2 * x) for x in values if x % 2 == 0]
    got = [] if result.table is None else list(zip(result.table["x"].to_pylist(), result.table["y"].to_pylist()))
    assert got == expected
    assert result.metrics["even"].rows_out == len(expected) == result.rows_delivered


def test_failing_rows_are_isolated_and_the_rest_pass() -> None:
    table = pa.table({"x": list(range(100))})
    outcome = apply_filter(fail_on_multiples_of_7, table, NO_WAIT, "s")
    assert outcome.table is not None
    assert outcome.table["x"].to_pylist() == [x for x in range(100) if x % 7]
    assert len(outcome.dead) == 1 and outcome.dead[0].error.one_line() == "ValueError: multiple of 7"
    assert outcome.dead[0].error.error_type == "ValueError" and "fail_on_multiples_of_7" in outcome.dead[0].error.traceback
    assert outcome.dead[0].rows["x"].to_pylist() == list(range(0, 100, 7))
    with pytest.raises(ValueError, match="multiple of 7"):
        apply_filter(fail_on_multiples_of_7, table, NO_WAIT, "s", strict=True)


def test_transient_failures_are_retried_without_dead_letters() -> None:
    calls = {"n": 0}

    def flaky(batch: pa.Table) -> pa.Table:
        calls["n"] += 1
        if calls["n"] < 3:
            raise TransientError("try again")
        return batch

    outcome = apply_filter(flaky, pa.table({"x": [1, 2, 3]}), NO_WAIT, "s")
    assert outcome.table is not None and outcome.table.num_rows == 3
    assert outcome.dead == [] and outcome.errors == 2


def test_dead_letters_are_stored_and_replayed_exactly_once(tmp_path: Path) -> None:
    table = pa.table({"x": list(range(50))})
    delivered: list[pa.Table] = []
    pipeline = Pipeline(
        TableSource(table, 10),
        [Stage("check", fail_on_multiples_of_7, retry=NO_WAIT), Stage("double", add_double)],
        CallbackSink(delivered.append),
        PipelineOptions(dead_letter_dir=str(tmp_path / "dead")),
    )
    result = engine.run(pipeline, "inline").result()
    assert sorted(pa.concat_tables(delivered)["x"].to_pylist()) == [x for x in range(50) if x % 7]
    assert result.metrics["check"].dead_letters == 8
    store = DeadLetterStore(tmp_path / "dead")
    assert store.count("check") == 8  # rows
    assert store.list("check").num_rows == len(result.dead_letter_ids) == 5  # one letter per failing batch
    assert sorted(store.list("check")["error_message"].unique().to_pylist()) == ["multiple of 7"]
    assert store.list("check")["error_type"].unique().to_pylist() == ["ValueError"]
    assert store.list("check")["pattern"].unique().to_pylist() == ["pipeline"]

    delivered.clear()
    first = replay_dead_letters(pipeline, "check", fixed_fn=lambda batch: batch)
    again = replay_dead_letters(pipeline, "check", fixed_fn=lambda batch: batch)
    assert sorted(pa.concat_tables(delivered)["x"].to_pylist()) == list(range(0, 50, 7))
    assert pa.concat_tables(delivered)["y"].to_pylist() == [2 * x for x in pa.concat_tables(delivered)["x"].to_pylist()]
    assert first.report.replayed_rows == 8 and again.report.replayed_rows == 0
    assert store.count("check") == 0


def test_replay_with_a_still_broken_filter_keeps_the_letters(tmp_path: Path) -> None:
    pipeline = Pipeline(
        TableSource(pa.table({"x": [7, 8]})),
        [Stage("check", fail_on_multiples_of_7, retry=NO_WAIT)],
        CollectSink(),
        PipelineOptions(dead_letter_dir=str(tmp_path)),
    )
    engine.run(pipeline, "inline").result()
    replay = replay_dead_letters(pipeline, "check")
    assert replay.report.replayed_letters == 0 and len(replay.report.failed_letters) == 1
    assert DeadLetterStore(tmp_path).count("check") == 1  # the row of 7 is still there


def test_parquet_and_text_sources_and_parquet_sink(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": list(range(30))}), tmp_path / "a.parquet", row_group_size=7)
    pq.write_table(pa.table({"x": list(range(30, 40))}), tmp_path / "b.parquet")
    out = tmp_path / "out"
    result = engine.run(Pipeline(ParquetSource(str(tmp_path), batch_rows=8), [Stage("even", keep_even)], ParquetSink(str(out))), "inline").result()
    assert (out / "_SUCCESS").exists()
    assert sorted(pq.read_table(out)["x"].to_pylist()) == list(range(0, 40, 2))
    assert result.rows_delivered == 20

    text = tmp_path / "lines.txt"
    text.write_bytes(b"alpha beta\n\ngamma, \"delta\"\r\nepsilon")
    lines = engine.run(Pipeline(TextSource(str(text)), [Stage("id", lambda b: b)], CollectSink()), "inline").result().table
    # The engine's one text rule (MapReduce and pipelines): lines end at \n only and keep it.
    assert lines is not None and lines["line"].to_pylist() == ["alpha beta\n", "\n", 'gamma, "delta"\r\n', "epsilon"]


def test_missing_source_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list(ParquetSource(str(tmp_path / "nowhere")).batches())


def test_iterator_and_live_feed_sources() -> None:
    batches = [pa.record_batch({"x": [i, i + 1]}) for i in range(0, 10, 2)]
    result = engine.run(Pipeline(IteratorSource(iter(batches)), [Stage("id", lambda b: b)], CollectSink()), "inline").result()
    assert result.table is not None and result.table["x"].to_pylist() == list(range(10))

    feed = LiveFeed(capacity=2)

    def produce() -> None:
        for i in range(5):
            feed.push(pa.table({"x": [i]}))
        feed.close()

    producer = threading.Thread(target=produce)
    producer.start()
    result = engine.run(Pipeline(feed, [Stage("id", lambda b: b)], CollectSink()), "inline").result()
    producer.join()
    assert result.table is not None and result.table["x"].to_pylist() == list(range(5))
    with pytest.raises(RuntimeError, match="after close"):
        feed.push(pa.table({"x": [9]}))


def test_live_feed_admits_pushes_through_a_rate_limiter() -> None:
    now = {"t": 0.0}
    limiter = RateLimiter(None, per_client_rate_per_s=10.0, per_client_burst=10.0, mode="drop", clock=lambda: now["t"])
    feed = LiveFeed(capacity=8, rate_limiter=limiter)
    feed.push(pa.table({"x": list(range(10))}), client_id="alice")
    with pytest.raises(RateLimitedError):
        feed.push(pa.table({"x": [1]}), client_id="alice")  # alice's 10 rows/s are spent
    feed.push(pa.table({"x": [2]}), client_id="bob")
    now["t"] = 1.0
    feed.push(pa.table({"x": [3]}), client_id="alice")
    feed.close()
    assert [t.num_rows for t in feed.batches()] == [10, 1, 1]


def test_transient_sink_failures_are_retried() -> None:
    failures = {"left": 2}
    delivered: list[int] = []

    def flaky_sink(table: pa.Table) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise TransientError("service busy")
        delivered.extend(table["x"].to_pylist())

    options = PipelineOptions(sink_retry=NO_WAIT)
    engine.run(Pipeline(TableSource(pa.table({"x": [1, 2, 3]}), 1), [Stage("id", lambda b: b)], CallbackSink(flaky_sink), options), "inline").result()
    assert delivered == [1, 2, 3]


def plain_lines(data: bytes) -> tuple[list[str], list[tuple[int, bytes]]]:
    """The oracle of the text rule: lines end at \\n and keep it; non-UTF-8 lines are bad."""
    good, bad, offset = [], [], 0
    parts = data.split(b"\n")
    for raw in [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else []):
        try:
            good.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            bad.append((offset, raw))
        offset += len(raw)
    return good, bad


@pytest.mark.parametrize("with_store", [True, False])
def test_bad_source_records_are_dead_lettered_counted_and_never_fatal(tmp_path: Path, with_store: bool) -> None:
    data = b"alpha\r\n\xff\xfe broken\nbeta\n\nga\xc3mma\ndelta"
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    good, bad = plain_lines(data)
    store_dir = tmp_path / "dead"
    options = PipelineOptions(dead_letter_dir=str(store_dir) if with_store else None)
    result = engine.run(Pipeline(TextSource(str(path)), [Stage("id", lambda b: b)], CollectSink(), options),
                        "inline").result(timeout_s=60)
    assert result.table is not None and result.table["line"].to_pylist() == good
    assert result.metrics["source"].dead_letters == len(bad) == 2
    assert result.metrics["source"].rows_out == len(good)
    if not with_store:
        assert [(step, rows.num_rows) for step, rows, _ in result.unstored_dead] == [("read", 2)]
        return
    store = DeadLetterStore(store_dir)
    listing = store.list("read")
    assert listing["pattern"].to_pylist() == ["pipeline"] and listing["error_type"].to_pylist() == ["UnicodeDecodeError"]
    origin = json.loads(listing["source"][0].as_py())
    assert origin["file"] == str(path) and origin["offsets"] == [offset for offset, _ in bad]
    assert store.all_rows("read")["line"].to_pylist() == [raw for _, raw in bad]
    assert len(result.dead_letter_ids) == 1


def test_the_inline_handle_has_the_handle_shape() -> None:
    feed = LiveFeed(capacity=4)
    handle = engine.run(Pipeline(feed, [Stage("double", add_double)], CollectSink()), "inline")
    handle.push(pa.table({"x": [1, 2]}))
    handle.scale("double", 3)
    assert handle.status()["state"] == "running" and handle.progress() is None and not handle.done()
    with pytest.raises(ResultTimeoutError):
        handle.result(timeout_s=0.01)
    result = handle.close(timeout_s=60)
    assert handle.status() == {"state": "succeeded", "executor": "inline", "status": "completed"}
    assert handle.progress() == 1.0 and handle.done()
    counters = handle.counters()
    assert counters["double.rows_out"] == 2 and counters["sink.rows_in"] == 2 and counters["source.rows_out"] == 2
    assert handle.metrics()["double"].replicas == 3 and result.metrics["double"].batches_in == 1
    with pytest.raises(TypeError, match="LiveFeed"):
        engine.run(Pipeline(TableSource(pa.table({"x": [1]})), [Stage("id", lambda b: b)], CollectSink()),
                   "inline").push(pa.table({"x": [1]}))


def test_an_inline_source_failure_fails_the_run_naming_the_source() -> None:
    def broken() -> object:
        yield pa.table({"x": [1]})
        raise OSError("network went away")

    handle = engine.run(Pipeline(IteratorSource(broken()), [Stage("id", lambda b: b)], CollectSink()), "inline")
    with pytest.raises(PipelineFailedError, match=r"^source IteratorSource failed: OSError: network went away$"):
        handle.result(timeout_s=60)
