"""MapReduce under failures: every test asserts the exact output against local mode.

These run on a Ray cluster of their own (the shared runtime is stopped first), because
they kill actors, processes and nodes.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pytest
import ray

import engine
from engine import JobOptions
from engine.testing import ChaosPlan, MasterChaos, WorkerChaos
from jobs.wordcount_job import SUM_COUNTS, count_words_in_lines, wordcount_job
from tests.oracles import table_to_dict, wordcount_oracle

pytestmark = pytest.mark.fault

# Speculation is off unless a test is about it, so a doomed worker is sure to get its task.
FAST_FAILOVER = dict(heartbeat_interval_s=0.2, heartbeat_timeout_s=5.0, snapshot_every_tasks=1, snapshot_every_s=0.5,
                     speculation=False)


@pytest.fixture(scope="module")
def fault_cluster(request: pytest.FixtureRequest) -> Iterator[None]:
    """A fresh embedded 2-CPU cluster for this module's fault tests."""
    if ray.is_initialized():
        ray.shutdown()
    engine.connect(num_cpus=2)
    yield
    engine.shutdown()


def make_corpus(directory: Path, files: int = 3, lines: int = 400, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    vocabulary = [f"w{i}" for i in range(60)] + ["\u00e9t\u00e9", "Zz"]
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(files):
        text = "\n".join(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(0, 9))) for _ in range(lines))
        path = directory / f"part-{index}.txt"
        path.write_text(text + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def run_with_chaos(tmp_path: Path, chaos: ChaosPlan, split_size: int = 1500, reducers: int = 4,
                   **options: object) -> tuple[engine.JobResult, dict]:
    files = make_corpus(tmp_path / "in")
    job = wordcount_job([str(tmp_path / "in")], str(tmp_path / "out"), reducers=reducers, split_size=split_size,
                        options=JobOptions(**{**FAST_FAILOVER, **options}))
    result = engine.run(job, chaos=chaos).result(timeout_s=240)
    local = engine.run(wordcount_job([str(tmp_path / "in")], str(tmp_path / "local"), reducers=reducers,
                                           split_size=split_size), "inline").result()
    assert result.table().equals(local.table())
    assert table_to_dict(result.table()) == wordcount_oracle(files)
    assert result.counters["map_input_records"] == local.counters["map_input_records"]
    return result, result.details


def test_worker_killed_in_map_phase(fault_cluster: None, tmp_path: Path) -> None:
    result, summary = run_with_chaos(tmp_path, ChaosPlan(workers={0: WorkerChaos(die_after_tasks=2, die_in_phase="map")}))
    assert len(summary["failed_workers"]) == 1
    assert max(a for t, a in summary["attempts"].items() if t.startswith("map")) >= 2
    assert any("replacement worker" in e for e in summary["events"])


def test_worker_killed_in_reduce_phase(fault_cluster: None, tmp_path: Path) -> None:
    # The scheduler never leaves a ready worker idle while work waits: the doomed worker gets a
    # map when the job starts (its output is lost with it) and a reduce when that phase starts
    # (it dies in it), so this is deterministic.
    result, summary = run_with_chaos(tmp_path, ChaosPlan(workers={1: WorkerChaos(die_after_tasks=1, die_in_phase="reduce")}),
                                     reducers=8)
    assert len(summary["failed_workers"]) == 1, (summary["events"], summary["task_workers"])
    # the dead worker's completed maps were re-executed, and its reduce ran again
    assert max(a for t, a in summary["attempts"].items() if t.startswith("map")) >= 2
    assert max(a for t, a in summary["attempts"].items() if t.startswith("reduce")) >= 2


@pytest.mark.parametrize("snapshot_every_tasks", [1, 3])
def test_primary_master_killed_backup_takes_over(fault_cluster: None, tmp_path: Path,
                                                 snapshot_every_tasks: int) -> None:
    # The primary dies committing its 5th completion, before any snapshot of it: with a
    # snapshot every 3 completions, the 4th and 5th are not in the last snapshot.
    result, summary = run_with_chaos(tmp_path, ChaosPlan(master=MasterChaos(die_after_completions=5)),
                                     speculation=False, snapshot_every_tasks=snapshot_every_tasks, snapshot_every_s=60.0)
    assert summary["takeover"] is True
    assert summary["master"].endswith("-master-1")
    lost = 5 - (5 - 1) // snapshot_every_tasks * snapshot_every_tasks  # completions after the last snapshot
    # a task in the last snapshot never runs again; only the lost completions may
    assert sum(count - 1 for count in summary["executions"].values()) <= lost, summary["executions"]
    assert sum(1 for a in summary["attempts"].values() if a == 1) >= 5


def test_slow_worker_with_and_without_speculation(fault_cluster: None, tmp_path: Path) -> None:
    slow = ChaosPlan(workers={0: WorkerChaos(slowdown=5.0, delay_s=2.0)})
    with_backups, summary_on = run_with_chaos(tmp_path / "on", slow, speculation=True, speculation_after=0.25,
                                              speculation_min_s=0.3)
    without, summary_off = run_with_chaos(tmp_path / "off", slow, speculation=False)
    assert with_backups.table().equals(without.table())
    assert summary_on["speculative_attempts"] >= 1, summary_on["events"]
    assert summary_off["speculative_attempts"] == 0


POISON = "w13"


def poisoned_map(batch: pa.Table) -> pa.Table:
    if any(POISON in line.split() for line in batch.column("line").to_pylist()):
        raise ValueError(f"cannot handle {POISON}")
    return count_words_in_lines(batch)


def poison_job(tmp_path: Path, name: str, fraction: float) -> engine.MapReduceJob:
    return engine.MapReduceJob(name="poison", source=engine.TextSource(str(tmp_path / "in"), split_size=4000),
                               map=poisoned_map, combine=SUM_COUNTS, reduce=SUM_COUNTS, keys="word", reducers=3,
                               output=str(tmp_path / name), options=JobOptions(max_bad_record_fraction=fraction))


def test_poison_records_are_skipped_into_dead_letters(fault_cluster: None, tmp_path: Path) -> None:
    files = make_corpus(tmp_path / "in")
    lines = [line for f in files for line in f.read_text().split("\n")[:-1]]
    poisoned = [line for line in lines if POISON in line.split()]
    result = engine.run(poison_job(tmp_path, "out", 0.5)).result(timeout_s=240)
    local = engine.run(poison_job(tmp_path, "local", 0.5), "inline").result()
    assert result.table().equals(local.table())
    clean = wordcount_oracle([])
    from collections import Counter

    clean = dict(Counter(w for line in lines if POISON not in line.split() for w in line.split()))
    assert table_to_dict(result.table()) == clean
    dead = result.dead_letters()
    assert result.counters["bad_records_skipped"] == len(poisoned) == dead.num_rows
    assert sorted(r.decode().rstrip("\n") for r in dead.column("record").to_pylist()) == sorted(poisoned)
    assert set(dead.column("step").to_pylist()) == {"map"}
    assert all("cannot handle w13" in reason for reason in dead.column("error").to_pylist())


def test_too_many_poison_records_fail_the_job_clearly(fault_cluster: None, tmp_path: Path) -> None:
    make_corpus(tmp_path / "in")
    with pytest.raises(engine.JobFailedError, match=r"records were bad.* the allowed 0\.1%"):
        engine.run(poison_job(tmp_path, "out", 0.001)).result(timeout_s=240)
    with pytest.raises(engine.TooManyBadRecordsError):
        engine.run(poison_job(tmp_path, "local", 0.001), "inline").result()


def random_master_chaos(rng: random.Random, point: str, maps: int, reducers: int) -> tuple[MasterChaos, int]:
    """A master fault at ``point`` that is sure to fire in a job of ``maps`` + ``reducers``
    tasks, and the lowest number the master that ends the job must have."""
    tasks = maps + reducers
    if point == "reduce":
        return MasterChaos(die_after_completions=rng.randint(1, reducers), at="reduce"), 1
    if point == "standby":  # the primary dies, then the standby that took over
        return MasterChaos(die_after_completions=rng.randint(1, tasks - 2), standby_after_completions=1), 2
    return MasterChaos(die_after_completions=rng.randint(1, tasks - 1), at=point), 1


def test_randomized_chaos_always_gives_the_exact_output(fault_cluster: None, tmp_path: Path) -> None:
    # Seeded random faults, each point of a master crash in turn: right after a commit (before
    # any snapshot of it), in the middle of a snapshot write, in the reduce phase, and the
    # standby after it took over; a random worker fault too.  Each fault is sure to fire and
    # the job's own summary must show the takeovers it caused.
    rng = random.Random(20261124)
    points = ["commit", "snapshot", "reduce", "standby"]
    rng.shuffle(points)
    started = time.monotonic()
    for round_number, point in enumerate(points):
        if time.monotonic() - started > 25:  # bounded in time: at least one round always runs
            break
        split_size, reducers = rng.choice([700, 1500, 4000]), rng.randint(2, 5)
        directory = tmp_path / f"round-{round_number}"
        make_corpus(directory / "in")
        maps = len(wordcount_job([str(directory / "in")], str(directory / "plan"), reducers=reducers,
                                 split_size=split_size).source.plan_splits())
        master, lowest = random_master_chaos(rng, point, maps, reducers)
        plan = ChaosPlan(workers={rng.randrange(2): WorkerChaos(die_after_tasks=rng.randint(1, 4),
                                                                die_in_phase=rng.choice(["map", "reduce", None]))},
                         master=master)
        _, summary = run_with_chaos(directory, plan, split_size=split_size, reducers=reducers)
        described = (round_number, plan, maps, summary["master"], summary["events"][-20:])
        assert summary["takeover"] is True, described
        assert int(summary["master"].rsplit("-", 1)[1]) >= lowest, described


def test_job_resumes_from_its_snapshot_store_after_the_driver_is_gone(fault_cluster: None, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from engine.mapreduce.snapshot import SnapshotStore
    from tests.fault.resume_job import resumable_job

    files = make_corpus(tmp_path / "in", files=2, lines=500)
    root = Path(__file__).resolve().parents[2]
    gone = subprocess.run([sys.executable, "-m", "tests.fault.resume_job", str(tmp_path / "in"), str(tmp_path / "out")],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert gone.returncode == 3, gone.stderr[-2000:]
    job = resumable_job(str(tmp_path / "in"), str(tmp_path / "out"))
    snapshot = SnapshotStore(str(tmp_path / "out" / "_snapshots"), job.name, job.fingerprint()).latest()
    assert snapshot is not None
    done = {t["task_id"]: t["attempt"] for t in snapshot.state["tasks"]
            if t["kind"] == "reduce" and t["state"] == "completed"}
    assert len(done) >= 3
    parts = {t: os.stat(tmp_path / "out" / f"part-{int(t.split('-')[1]):05d}.parquet").st_mtime_ns for t in done}
    result = engine.run(job, resume=True).result(timeout_s=240)
    for task_id, attempt in done.items():
        assert result.attempts[task_id] == attempt  # not run again
        assert os.stat(tmp_path / "out" / f"part-{int(task_id.split('-')[1]):05d}.parquet").st_mtime_ns == parts[task_id]
    assert table_to_dict(result.table()) == wordcount_oracle(files)
    local = engine.run(resumable_job(str(tmp_path / "in"), str(tmp_path / "local")), "inline").result()
    assert result.table().equals(local.table())
    assert (tmp_path / "out" / "_SUCCESS").exists()


def test_worker_pool_killed_mid_job_is_replaced_by_one_that_adopts_its_workers(fault_cluster: None,
                                                                               tmp_path: Path) -> None:
    from engine.runtime.supervisor import NAMESPACE, POOL_NAME

    files = make_corpus(tmp_path / "in")
    # slowed so the job outlives the pool; worker 1 dies later, so its replacement must come
    # from the new pool
    chaos = ChaosPlan(workers={0: WorkerChaos(delay_s=0.2), 1: WorkerChaos(delay_s=0.2, die_after_tasks=5)})
    job = wordcount_job([str(tmp_path / "in")], str(tmp_path / "out"), reducers=4, split_size=1500,
                        options=JobOptions(**FAST_FAILOVER))
    handle = engine.run(job, chaos=chaos)
    old_pool = ray.get_actor(POOL_NAME, namespace=NAMESPACE)
    deadline = time.monotonic() + 60
    while handle.progress() <= 0.0 and time.monotonic() < deadline:
        time.sleep(0.05)
    ray.kill(old_pool, no_restart=True)
    result = handle.result(timeout_s=240)
    assert table_to_dict(result.table()) == wordcount_oracle(files)
    events = result.details["events"]
    assert any("the worker pool died" in e for e in events), events
    assert len(result.details["failed_workers"]) == 1 and any("replacement worker" in e for e in events), events
    pool = ray.get_actor(POOL_NAME, namespace=NAMESPACE)
    members = ray.get(pool.members.remote())
    # the new pool found the job's surviving workers by name, and they were released to it
    assert set(result.details["workers"]) - set(result.details["failed_workers"]) <= set(members["free"]), members
    assert result.details["job_id"] not in members["leased"].values(), members
    again = engine.run(wordcount_job([str(tmp_path / "in")], str(tmp_path / "again"), reducers=2, split_size=1500))
    assert table_to_dict(again.result(timeout_s=120).table()) == wordcount_oracle(files)
