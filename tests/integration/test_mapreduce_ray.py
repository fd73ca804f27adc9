"""The Ray executor against local mode and the Counter oracle, on the shared runtime."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from jobs.wordcount_job import wordcount_job
from tests.oracles import table_to_dict, wordcount_oracle
from tests.unit.test_wordcount_local import FILE_BYTES, check_output_contract, write_files

pytestmark = pytest.mark.integration


@given(contents=st.lists(FILE_BYTES, min_size=1, max_size=3), reducers=st.integers(1, 4),
       split_size=st.integers(4, 60))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_ray_equals_local_equals_oracle(ray_runtime, tmp_path_factory: pytest.TempPathFactory, contents: list[bytes],
                                        reducers: int, split_size: int) -> None:
    base = tmp_path_factory.mktemp("wc")
    files = write_files(base / "in", contents)
    job = wordcount_job([str(base / "in")], str(base / "ray"), reducers=reducers, split_size=split_size)
    distributed = engine.run(job).result(timeout_s=120)
    local = engine.run(wordcount_job([str(base / "in")], str(base / "local"), reducers=reducers,
                                           split_size=split_size), "inline").result()
    assert distributed.table().equals(local.table())
    assert table_to_dict(distributed.table()) == wordcount_oracle(files)
    assert distributed.dead_letters().sort_by("offset").equals(local.dead_letters().sort_by("offset"))
    for name in ("map_input_records", "map_input_bytes", "invalid_input_records", "reduce_output_records"):
        assert distributed.counters[name] == local.counters[name], name
    check_output_contract(base / "ray", reducers)


def test_handle_reports_status_progress_and_counters(ray_runtime, tmp_path: Path) -> None:
    write_files(tmp_path / "in", [b"a b c\n" * 1000, b"c d\n" * 500])
    handle = engine.run(wordcount_job([str(tmp_path / "in")], str(tmp_path / "out"), reducers=2, split_size=1000))
    first = handle.status()
    assert first["state"] in ("starting", "running", "succeeded")
    result = handle.result(timeout_s=120)
    assert table_to_dict(result.table()) == {"a": 1000, "b": 1000, "c": 1500, "d": 500}
    assert handle.progress() == 1.0
    assert handle.counters()["map_input_records"] == 1500
    assert result.map_tasks == len(range(0, 6000, 1000)) + len(range(0, 2000, 1000))
    assert all(attempt >= 1 for attempt in result.attempts.values())


def sum_by_key(table: pa.Table) -> pa.Table:
    return table.group_by("key").aggregate([("value", "sum")]).rename_columns(["key", "value"])


def tag_rows(table: pa.Table) -> pa.Table:
    engine.increment_counter("rows_seen", table.num_rows)
    return table.select(["key", "value"])


def test_table_input_with_user_counters_and_integer_keys(ray_runtime, tmp_path: Path) -> None:
    keys = pa.array([i % 7 for i in range(1000)], pa.int64())
    table = pa.table({"key": keys, "value": pa.array(range(1000), pa.int64()), "other": ["x"] * 1000})
    job = engine.MapReduceJob(name="sums", source=engine.TableSource(table, batch_rows=150), map=tag_rows,
                              combine=sum_by_key, reduce=sum_by_key, keys=["key"], reducers=3,
                              output=str(tmp_path / "out"))
    result = engine.run(job).result(timeout_s=120)
    expected = {k: sum(v for v in range(1000) if v % 7 == k) for k in range(7)}
    got = result.table()
    assert dict(zip(got.column("key").to_pylist(), got.column("value").to_pylist())) == expected
    assert result.counters["rows_seen"] == 1000
    assert engine.run(job.__class__(name="sums", source=job.source, map=tag_rows, combine=sum_by_key,
                                          reduce=sum_by_key, keys=["key"], reducers=3,
                                          output=str(tmp_path / "local")), "inline").result().table().equals(got)


def test_parquet_input_split_by_row_group(ray_runtime, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    source = pa.table({"key": pa.array([f"k{i % 5}" for i in range(500)]), "value": pa.array([1] * 500, pa.int64())})
    (tmp_path / "in").mkdir()
    pq.write_table(source, tmp_path / "in" / "data.parquet", row_group_size=100)
    total = engine.GroupByAggregate("key", {"value": "sum"})
    job = engine.MapReduceJob(name="pq", source=engine.ParquetSource(str(tmp_path / "in")), map=lambda t: t,
                              combine=total, reduce=total, keys="key", reducers=2, output=str(tmp_path / "out"))
    result = engine.run(job).result(timeout_s=120)
    assert result.map_tasks == 5
    assert dict(zip(result.table().column("key").to_pylist(), result.table().column("value").to_pylist())) == \
        {f"k{i}": 100 for i in range(5)}
