"""Bad-record skipping in local mode: map records and whole reduce key groups."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import engine

pytestmark = pytest.mark.unit

TOTAL = engine.GroupByAggregate("key", {"value": "sum"})


def reduce_refusing_key_3(table: pa.Table) -> pa.Table:
    if pc.any(pc.equal(table.column("key"), 3)).as_py():
        raise ValueError("key 3 is cursed")
    return TOTAL(table)


def map_refusing_value_13(table: pa.Table) -> pa.Table:
    if pc.any(pc.equal(table.column("value"), 13)).as_py():
        raise ValueError("13 is unlucky")
    return table


def test_a_failing_reduce_group_is_skipped_whole_and_others_survive(tmp_path: Path) -> None:
    table = pa.table({"key": pa.array([i % 5 for i in range(200)], pa.int64()), "value": pa.array([1] * 200)})
    job = engine.MapReduceJob(name="cursed", source=engine.TableSource(table, batch_rows=50), map=lambda t: t,
                              combine=TOTAL, reduce=reduce_refusing_key_3, keys="key", reducers=2,
                              output=str(tmp_path / "out"), options=engine.JobOptions(max_bad_record_fraction=0.5))
    result = engine.run(job, "inline").result()
    got = dict(zip(result.table().column("key").to_pylist(), result.table().column("value").to_pylist()))
    assert got == {0: 40, 1: 40, 2: 40, 4: 40}
    dead = result.dead_letters()
    assert set(dead.column("step").to_pylist()) == {"reduce"}
    assert all("key 3 is cursed" in r for r in dead.column("error").to_pylist())
    assert sorted(b'"key": 3' in r for r in dead.column("record").to_pylist()) == [True] * dead.num_rows
    assert result.counters["bad_records_skipped"] == dead.num_rows >= 1


def test_a_failing_map_record_is_bisected_out_of_its_batch(tmp_path: Path) -> None:
    table = pa.table({"key": pa.array([i % 4 for i in range(100)], pa.int64()), "value": pa.array(range(100))})
    job = engine.MapReduceJob(name="unlucky", source=engine.TableSource(table, batch_rows=100),
                              map=map_refusing_value_13, reduce=TOTAL, keys="key", reducers=3,
                              output=str(tmp_path / "out"), options=engine.JobOptions(max_bad_record_fraction=0.05))
    result = engine.run(job, "inline").result()
    got = dict(zip(result.table().column("key").to_pylist(), result.table().column("value").to_pylist()))
    assert got == {k: sum(v for v in range(100) if v % 4 == k and v != 13) for k in range(4)}
    dead = result.dead_letters().to_pylist()
    assert [(d["step"], d["offset"], d["location"]) for d in dead] == [("map", 13, "table-0")]
    assert dead[0]["error"] == "ValueError: 13 is unlucky"
    assert b'"value": 13' in dead[0]["record"]


def test_a_fixed_job_replays_the_dead_letters_of_a_job(tmp_path: Path) -> None:
    table = pa.table({"key": pa.array([i % 4 for i in range(100)], pa.int64()), "value": pa.array(range(100))})
    broken = engine.MapReduceJob(name="unlucky", source=engine.TableSource(table, batch_rows=25),
                                 map=map_refusing_value_13, reduce=TOTAL, keys="key", reducers=2,
                                 output=str(tmp_path / "out"), options=engine.JobOptions(max_bad_record_fraction=0.05))
    result = engine.run(broken, "inline").result()
    letters = result.dead_letter_store().list("map")
    assert letters.num_rows == 1 and letters.column("pattern").to_pylist() == ["mapreduce"]
    replay = engine.MapReduceJob(name="unlucky-replay",
                                 source=engine.DeadLetterSource(result.dead_letter_store().directory, "map"),
                                 map=lambda t: t, reduce=TOTAL, keys="key", reducers=1, output=str(tmp_path / "replay"))
    replayed = engine.run(replay, "inline").result().table().to_pylist()
    assert replayed == [{"key": 13 % 4, "value": 13}]  # exactly the skipped record, once
