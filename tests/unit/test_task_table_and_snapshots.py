"""The master's task table transitions, its snapshot store and snapshot policy, without Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.io.splits import InputSplit
from engine.mapreduce.snapshot import SnapshotError, SnapshotPolicy, SnapshotStore
from engine.mapreduce.task_table import TaskState, TaskTable
from tests.fakes import FakeTime

pytestmark = pytest.mark.unit


def table() -> TaskTable:
    return TaskTable.for_job([InputSplit("text", "/a", 0, 10), InputSplit("text", "/a", 10, 20)], 2)


def test_first_attempt_to_finish_wins_and_late_replies_are_refused() -> None:
    tasks = table()
    first = tasks.start("map-00000", "w1")
    backup = tasks.start("map-00000", "w2", speculative=True)
    assert (first, backup) == (1, 2)
    assert tasks.complete("map-00000", backup, "w2", {"n": 1})
    assert tasks.losers("map-00000") == {1: "w1"}
    assert not tasks.complete("map-00000", first, "w1", {"n": 1})
    task = tasks.tasks["map-00000"]
    assert (task.state, task.location, task.executions, task.speculative_attempts) == (TaskState.COMPLETED, "w2", 1, 1)


def test_worker_loss_returns_running_and_completed_maps_to_idle() -> None:
    tasks = table()
    tasks.complete("map-00000", tasks.start("map-00000", "w1"), "w1", {})
    tasks.start("map-00001", "w1")
    assert tasks.worker_lost("w1") == ["map-00000", "map-00001"]
    assert [t.state for t in tasks.of_kind("map")] == [TaskState.IDLE, TaskState.IDLE]
    assert tasks.start("map-00000", "w2") == 2


def test_completed_maps_survive_worker_loss_once_all_reduces_are_done() -> None:
    tasks = table()
    for task_id in ("map-00000", "map-00001"):
        tasks.complete(task_id, tasks.start(task_id, "w1"), "w1", {})
    for task_id in ("reduce-00000", "reduce-00001"):
        tasks.complete(task_id, tasks.start(task_id, "w2"), "/out/part", {})
    assert tasks.worker_lost("w1") == []
    assert tasks.phase_done("map") and tasks.phase_done("reduce")


def test_failed_attempt_goes_back_to_idle_and_counts() -> None:
    tasks = table()
    attempt = tasks.start("reduce-00001", "w1")
    task = tasks.fail("reduce-00001", attempt)
    assert (task.state, task.failures) == (TaskState.IDLE, 1)


def test_json_round_trip_turns_running_into_idle() -> None:
    tasks = table()
    tasks.complete("map-00000", tasks.start("map-00000", "w1"), "w1", {"words": 3})
    tasks.start("map-00001", "w2")
    restored = TaskTable.from_json(json.loads(json.dumps(tasks.to_json())))
    assert restored.tasks["map-00000"].state is TaskState.COMPLETED
    assert restored.tasks["map-00000"].counters == {"words": 3}
    assert restored.tasks["map-00001"].state is TaskState.IDLE
    assert restored.tasks["map-00001"].attempt == 1
    assert restored.map_locations() == {"w1": [("map-00000", 1)]}


def test_snapshot_store_round_trip_and_pruning(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path), "job", "f" * 32, keep=2)
    for seq in range(1, 5):
        store.write(seq, {"tasks": [], "n": seq})
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"snapshot-job-{'f' * 12}-00000003.json",
                                                          f"snapshot-job-{'f' * 12}-00000004.json"]
    latest = store.latest()
    assert latest is not None and latest.seq == 4 and latest.state["n"] == 4


def test_corrupt_snapshot_is_refused_and_previous_good_one_used(tmp_path: Path) -> None:
    store = SnapshotStore(str(tmp_path), "job", "f" * 32)
    store.write(1, {"n": 1})
    path = Path(store.write(2, {"n": 2}))
    path.write_bytes(path.read_bytes().replace(b'\\"n\\":2', b'\\"n\\":9'))
    latest = store.latest()
    assert latest is not None and latest.seq == 1
    assert "checksum mismatch" in store.rejected[0]
    path.write_bytes(b"{not json")
    with pytest.raises(SnapshotError, match="corrupt or truncated"):
        store.read(str(path))


def test_snapshot_of_another_job_is_refused(tmp_path: Path) -> None:
    other = Path(SnapshotStore(str(tmp_path), "other-job", "a" * 32).write(7, {"n": 1}))
    store = SnapshotStore(str(tmp_path), "job", "f" * 32)
    assert store.latest() is None and store.rejected == []  # not even looked at: another job's name
    other.rename(tmp_path / f"snapshot-job-{'f' * 12}-00000007.json")  # renamed to pass for this job's
    assert store.latest() is None
    assert "belongs to job 'other-job'" in store.rejected[0]
    changed_code = SnapshotStore(str(tmp_path), "other-job", "b" * 32)
    assert changed_code.latest() is None


def test_jobs_sharing_a_snapshot_directory_keep_their_own_snapshots(tmp_path: Path) -> None:
    stores = [SnapshotStore(str(tmp_path), name, fingerprint * 32, keep=1)
              for name, fingerprint in [("wordcount", "a"), ("wordcount", "b"), ("adtech views", "a")]]
    for seq in range(1, 4):
        for index, store in enumerate(stores):
            store.write(seq, {"job": index, "seq": seq})
    for index, store in enumerate(stores):
        latest = store.latest()
        assert latest is not None and latest.state == {"job": index, "seq": 3}
    assert len(list(tmp_path.iterdir())) == 3
    stores[0].clear()
    assert [s.latest() is not None for s in stores] == [False, True, True]


def test_snapshot_policy_every_n_completions_or_t_seconds_and_never_for_nothing() -> None:
    time = FakeTime()
    policy = SnapshotPolicy(every_tasks=3, every_s=10.0, clock=time.clock)
    time.sleep(60.0)
    assert not policy.due()  # nothing completed: nothing to write
    policy.completed(2)
    assert policy.due()  # 60 s since the last one
    policy.written()
    policy.completed(2)
    assert not policy.due()
    policy.completed()
    assert policy.due()  # three completions
    policy.written()
    policy.completed()
    time.sleep(9.9)
    assert not policy.due()
    time.sleep(0.1)
    assert policy.due()


def test_an_ended_attempt_is_not_a_failure() -> None:
    tasks = table()
    first = tasks.start("map-00000", "w1")
    second = tasks.start("map-00000", "w2", speculative=True)
    assert tasks.end_attempt("map-00000", first) is True
    assert tasks.tasks["map-00000"].state is TaskState.IN_PROGRESS
    assert tasks.end_attempt("map-00000", first) is False
    assert tasks.end_attempt("map-00000", second) is True
    task = tasks.tasks["map-00000"]
    assert (task.state, task.failures) == (TaskState.IDLE, 0)
