"""MapReduce on both executors ("inline" and "ray", the ``executor`` fixture) against
plain-Python oracles: results, counters, dead letters, the output contract, the handle."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from jobs.wordcount_job import SUM_COUNTS, count_words_in_lines, wordcount_job
from tests.oracles import table_to_dict, wordcount_oracle
from tests.unit.test_wordcount_local import FILE_BYTES, check_output_contract, write_files

pytestmark = pytest.mark.integration


def text_facts(files: list[Path]) -> tuple[int, int, list[tuple[str, int, bytes]]]:
    """Plain Python: (lines, bytes, [(file name, byte offset, line) of lines not UTF-8])."""
    lines = size = 0
    invalid = []
    for path in files:
        data = path.read_bytes()
        size += len(data)
        offset = 0
        for raw in data.split(b"\n")[: -1 if data.endswith(b"\n") or not data else None]:
            lines += 1
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                invalid.append((path.name, offset, raw + b"\n" if offset + len(raw) < len(data) else raw))
            offset += len(raw) + 1
    return lines, size, invalid


@given(contents=st.lists(FILE_BYTES, min_size=1, max_size=3), reducers=st.integers(1, 4),
       split_size=st.integers(4, 60))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_wordcount_equals_the_counter_oracle(executor: str, tmp_path_factory: pytest.TempPathFactory,
                                             contents: list[bytes], reducers: int, split_size: int) -> None:
    base = tmp_path_factory.mktemp("wc")
    files = write_files(base / "in", contents)
    result = engine.run(wordcount_job([str(base / "in")], str(base / "out"), reducers=reducers, split_size=split_size,
                                      options=engine.JobOptions(max_bad_record_fraction=1.0)),
                        executor).result(timeout_s=120)
    words = wordcount_oracle(files)
    assert table_to_dict(result.table()) == words
    lines, size, invalid = text_facts(files)
    assert (result.counters["map_input_records"], result.counters["map_input_bytes"]) == (lines, size)
    assert result.counters["invalid_input_records"] == len(invalid)
    assert result.counters["reduce_output_records"] == len(words)
    dead = sorted((Path(d["location"]).name, d["offset"], d["record"]) for d in result.dead_letters().to_pylist())
    assert dead == sorted(invalid)
    assert all(count == 1 for count in result.details["executions"].values())
    check_output_contract(base / "out", reducers)


def test_handle_reports_status_progress_and_counters(executor: str, tmp_path: Path) -> None:
    write_files(tmp_path / "in", [b"a b c\n" * 1000, b"c d\n" * 500])
    handle = engine.run(wordcount_job([str(tmp_path / "in")], str(tmp_path / "out"), reducers=2, split_size=1000),
                        executor)
    assert handle.status()["state"] in ("starting", "running", "succeeded")
    early = handle.counters()  # the tasks completed so far
    result = handle.result(timeout_s=120)
    assert all(0 <= value <= result.counters[name] for name, value in early.items())
    assert table_to_dict(result.table()) == {"a": 1000, "b": 1000, "c": 1500, "d": 500}
    assert handle.progress() == 1.0 and handle.done()
    assert handle.status()["state"] == "succeeded"
    assert handle.counters()["map_input_records"] == 1500
    assert handle.metrics()["maps"]["completed"] == result.map_tasks
    assert result.map_tasks == len(range(0, 6000, 1000)) + len(range(0, 2000, 1000))
    assert set(result.attempts) == {f"map-{i:05d}" for i in range(8)} | {"reduce-00000", "reduce-00001"}
    assert all(attempt >= 1 for attempt in result.attempts.values())


def sum_by_key(table: pa.Table) -> pa.Table:
    return table.group_by("key").aggregate([("value", "sum")]).rename_columns(["key", "value"])


def tag_rows(table: pa.Table) -> pa.Table:
    engine.increment_counter("rows_seen", table.num_rows)
    return table.select(["key", "value"])


def test_table_input_with_user_counters_and_integer_keys(executor: str, tmp_path: Path) -> None:
    keys = pa.array([i % 7 for i in range(1000)], pa.int64())
    table = pa.table({"key": keys, "value": pa.array(range(1000), pa.int64()), "other": ["x"] * 1000})
    job = engine.MapReduceJob(name="sums", source=engine.TableSource(table, batch_rows=150), map=tag_rows,
                              combine=sum_by_key, reduce=sum_by_key, keys=["key"], reducers=3,
                              output=str(tmp_path / "out"))
    result = engine.run(job, executor).result(timeout_s=120)
    expected = {k: sum(v for v in range(1000) if v % 7 == k) for k in range(7)}
    got = result.table()
    assert dict(zip(got.column("key").to_pylist(), got.column("value").to_pylist())) == expected
    assert result.counters["rows_seen"] == 1000


def test_parquet_input_split_by_row_group(executor: str, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    source = pa.table({"key": pa.array([f"k{i % 5}" for i in range(500)]), "value": pa.array([1] * 500, pa.int64())})
    (tmp_path / "in").mkdir()
    pq.write_table(source, tmp_path / "in" / "data.parquet", row_group_size=100)
    total = engine.GroupByAggregate("key", {"value": "sum"})
    job = engine.MapReduceJob(name="pq", source=engine.ParquetSource(str(tmp_path / "in")), map=lambda t: t,
                              combine=total, reduce=total, keys="key", reducers=2, output=str(tmp_path / "out"))
    result = engine.run(job, executor).result(timeout_s=120)
    assert result.map_tasks == 5
    assert dict(zip(result.table().column("key").to_pylist(), result.table().column("value").to_pylist())) == \
        {f"k{i}": 100 for i in range(5)}


def test_count_and_mean_through_combine_and_reduce(executor: str, tmp_path: Path) -> None:
    rows = [(f"k{i % 6}", None if i % 5 == 0 else (i * 7) % 23) for i in range(300)]
    table = pa.table({"key": [k for k, _ in rows], "x": pa.array([v for _, v in rows], pa.int64())})
    values: dict[str, list[int]] = defaultdict(list)
    for key, value in rows:
        if value is not None:
            values[key].append(value)
    for function, want in (("count", {k: len(v) for k, v in values.items()}),
                           ("mean", {k: sum(v) / len(v) for k, v in values.items()})):
        stats = engine.GroupByAggregate("key", {"x": function})
        job = engine.MapReduceJob(name=f"stats-{function}", source=engine.TableSource(table, batch_rows=13,
                                                                                      split_rows=40),
                                  map=lambda t: t, combine=stats, reduce=stats, keys="key", reducers=3,
                                  output=str(tmp_path / function))
        got = engine.run(job, executor).result(timeout_s=120).table()
        assert dict(zip(got.column("key").to_pylist(), got.column("x").to_pylist())) == pytest.approx(want)


def flaky_map(table: pa.Table) -> pa.Table:
    raise engine.TransientError("the source is flaky")


def test_a_task_that_keeps_failing_fails_the_job_naming_it(executor: str, tmp_path: Path) -> None:
    table = pa.table({"key": pa.array([1, 2, 3], pa.int64())})
    job = engine.MapReduceJob(name="flaky", source=engine.TableSource(table), map=flaky_map, reduce=lambda t: t,
                              keys="key", reducers=1, output=str(tmp_path / "out"),
                              options=engine.JobOptions(max_task_attempts=2, retry=engine.RetryPolicy(max_attempts=1)))
    handle = engine.run(job, executor)
    with pytest.raises(engine.JobFailedError,
                       match=r"^task map-00000 failed 2 times; last error: TransientError: the source is flaky$"):
        handle.result(timeout_s=120)
    assert_gave_its_workers_back(handle, executor)


def assert_gave_its_workers_back(handle: engine.Handle, executor: str) -> None:
    """On Ray: the pool leases no worker to the ended job (a failed or cancelled job that
    kept them held their CPUs until the workers' idle timeout, stalling the next Ray work)."""
    if executor == "ray":
        import ray

        from engine.runtime.supervisor import get_pool

        leased = ray.get(get_pool().members.remote(), timeout=30)["leased"]
        assert handle.job_id not in leased.values(), leased


def slow_map(table: pa.Table) -> pa.Table:
    time.sleep(0.1)
    return table


def test_cancel_stops_the_job(executor: str, tmp_path: Path) -> None:
    table = pa.table({"key": pa.array(range(40), pa.int64())})
    job = engine.MapReduceJob(name="slow", source=engine.TableSource(table, batch_rows=1), map=slow_map,
                              reduce=lambda t: t, keys="key", reducers=1, output=str(tmp_path / "out"))
    handle = engine.run(job, executor)
    handle.cancel()
    with pytest.raises(engine.JobFailedError, match="cancelled"):
        handle.result(timeout_s=120)
    assert handle.status()["state"] == "cancelled" and handle.done()
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    assert_gave_its_workers_back(handle, executor)


def test_worker_ignores_a_lease_or_release_older_than_the_newest(ray_runtime: object) -> None:
    # A worker runs calls on several threads: a lease sent before a release may run after it.
    import ray

    from engine.mapreduce.worker import MapReduceWorker
    from engine.testing import WorkerChaos

    worker = MapReduceWorker.options(num_cpus=0).remote("engine-worker-order-test", float("inf"))
    try:
        ray.get(worker.lease.remote("job-b", None, (7, 3)))
        ray.get(worker.lease.remote("job-a", WorkerChaos(die_after_tasks=1), (7, 1)))  # late, from before
        assert ray.get(worker.ping.remote())["job"] == "job-b"
        ray.get(worker.release.remote("job-b", (7, 2)))  # older than the lease: ignored
        assert ray.get(worker.ping.remote())["job"] == "job-b"
        ray.get(worker.release.remote("job-b", (8, 0)))
        assert ray.get(worker.ping.remote())["job"] is None
        ray.get(worker.lease.remote("job-b", None, (7, 3)))  # the lease a later release ended stays ended
        assert ray.get(worker.ping.remote())["job"] is None
    finally:
        ray.kill(worker)


def test_a_resume_after_the_input_changed_starts_over_instead_of_mixing_parts(ray_runtime: object,
                                                                              tmp_path: Path) -> None:
    from engine.mapreduce.snapshot import SnapshotStore

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("old words\n" * 50)
    job = engine.MapReduceJob(name="changing", source=engine.TextSource(str(tmp_path / "in")),
                              map=count_words_in_lines, combine=SUM_COUNTS, reduce=SUM_COUNTS, keys="word",
                              reducers=2, output=str(tmp_path / "out"))
    # What an interrupted run over the old data left: a snapshot and a committed part.
    old_fingerprint = job.fingerprint()
    stale = SnapshotStore(str(tmp_path / "out" / "_snapshots"), "changing", old_fingerprint)
    stale.write(1, {"tasks": [], "workers": [], "failed_workers": [], "reducers": 2})
    pq.write_table(pa.table({"word": ["old"], "count": pa.array([50], pa.int64())}),
                   tmp_path / "out" / "part-00000.parquet")
    (tmp_path / "in" / "a.txt").write_text("new words here\n" * 30)  # size and mtime change
    changed = engine.MapReduceJob(name="changing", source=engine.TextSource(str(tmp_path / "in")),
                                  map=count_words_in_lines, combine=SUM_COUNTS, reduce=SUM_COUNTS, keys="word",
                                  reducers=2, output=str(tmp_path / "out"))
    assert changed.fingerprint() != old_fingerprint
    result = engine.run(changed, "ray", resume=True).result(timeout_s=120)
    assert table_to_dict(result.table()) == {"new": 30, "words": 30, "here": 30}
    assert not list((tmp_path / "out").glob("_snapshots/snapshot-*"))  # the stale one is gone too


def test_prewarming_never_starts_workers_beyond_the_cpus_while_a_job_holds_them(ray_runtime: object) -> None:
    # Every engine.connect() used to prewarm "until N are free": with a job holding the
    # workers it started N more, which could never be placed; the next job leased them and
    # waited for CPUs until the others' idle minute ran out (the 45-65 s test stalls).
    import ray

    from engine.runtime.supervisor import get_pool

    pool = get_pool()
    cpus = int(ray.cluster_resources()["CPU"])
    leased, pending = ray.get(pool.acquire.remote("prewarm-test", cpus), timeout=120)
    try:
        assert len(leased) == cpus and not pending
        ray.get(pool.prewarm.remote(cpus), timeout=60)
        members = ray.get(pool.members.remote(), timeout=60)
        assert len(members["free"]) + len(members["leased"]) == cpus, members
    finally:
        ray.get(pool.release.remote("prewarm-test"), timeout=60)


def test_a_lease_starts_no_more_new_workers_than_asked_and_takes_every_free_one(ray_runtime: object) -> None:
    # A one-split job asks for new_at_most=1: on a pool with no free worker it starts one
    # process, not one per CPU; free warm workers still all join it.
    import time

    import ray

    from engine.runtime.supervisor import get_pool, stop_idle_workers

    pool = get_pool()
    cpus = int(ray.cluster_resources()["CPU"])
    stop_idle_workers()
    leased, pending = ray.get(pool.acquire.remote("new-at-most", cpus, None, None, 1), timeout=120)
    assert len(leased) + len(pending) == 1
    ray.get(pool.release.remote("new-at-most"), timeout=60)
    ray.get(pool.prewarm.remote(cpus), timeout=60)  # the first now, the others a moment later
    deadline = time.monotonic() + 60
    while len(ray.get(pool.members.remote(), timeout=60)["free"]) < cpus and time.monotonic() < deadline:
        time.sleep(0.5)
    leased, pending = ray.get(pool.acquire.remote("new-at-most-2", cpus, None, None, 1), timeout=120)
    try:
        assert len(leased) + len(pending) == cpus
    finally:
        ray.get(pool.release.remote("new-at-most-2"), timeout=60)


def test_a_default_job_runs_its_maps_at_once_in_one_worker_with_a_slot_per_cpu(ray_runtime: object,
                                                                                tmp_path: Path) -> None:
    # One node: the job's worker reserves every CPU and runs a task per slot (as a Spark
    # executor does), so two maps run at the same time in the same process.  Each map leaves
    # a marker naming its process and waits (up to 30 s) for the other's: run one after the
    # other, the first would give up having seen only its own.
    import json
    import os
    import uuid

    import ray

    assert int(ray.cluster_resources()["CPU"]) == 2
    markers = tmp_path / "markers"
    markers.mkdir()

    def meet(table: pa.Table) -> pa.Table:
        (markers / uuid.uuid4().hex).write_text(json.dumps({"pid": os.getpid()}))
        deadline = time.monotonic() + 30
        while len(list(markers.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        seen = len(list(markers.iterdir()))
        return table.append_column("seen", pa.array([seen] * table.num_rows, pa.int64()))

    table = pa.table({"key": pa.array([i % 3 for i in range(10)], pa.int64())})
    keep = engine.GroupByAggregate("key", {"seen": "min"})
    job = engine.MapReduceJob(name="slots", source=engine.TableSource(table, batch_rows=5), map=meet, combine=keep,
                              reduce=keep, keys="key", reducers=2, output=str(tmp_path / "out"))
    result = engine.run(job, "ray").result(timeout_s=120)
    assert result.map_tasks == 2
    assert set(result.table().column("seen").to_pylist()) == {2}  # each map saw the other's marker
    pids = {json.loads(path.read_text())["pid"] for path in markers.iterdir()}
    assert len(pids) == 1 and len(result.details["workers"]) == 1


def test_the_pool_leases_workers_of_the_asked_size_and_stops_free_ones_of_another(ray_runtime: object) -> None:
    # A free two-slot worker holds both CPUs: a job that wants single-slot workers gets new
    # ones, and the two-slot one is stopped so that they can start.
    import ray

    from engine.runtime.supervisor import get_pool, stop_idle_workers

    pool = get_pool()
    stop_idle_workers()
    leased, pending = ray.get(pool.acquire.remote("shape-two", 1, None, None, None, 2), timeout=120)
    ((wide, handle),) = {**leased, **{name: h for name, (h, _) in pending.items()}}.items()
    assert ray.get(handle.ping.remote(), timeout=60)["cpus"] == 2
    ray.get(pool.release.remote("shape-two"), timeout=60)
    leased, pending = ray.get(pool.acquire.remote("shape-one", 2, None, None, None, 1), timeout=120)
    try:
        handles = {**leased, **{name: h for name, (h, _) in pending.items()}}
        assert len(handles) == 2 and wide not in handles
        assert [ray.get(h.ping.remote(), timeout=60)["cpus"] for h in handles.values()] == [1, 1]
        assert wide not in ray.get(pool.members.remote(), timeout=60)["free"]
    finally:
        ray.get(pool.release.remote("shape-one"), timeout=60)
