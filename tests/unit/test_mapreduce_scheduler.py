"""The scheduler's rules, one example each (the stateful test checks them in any order)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from engine.common.bad_records import ErrorDescription
from engine.errors import JobFailedError, TooManyBadRecordsError
from engine.io.splits import InputSplit
from engine.mapreduce.actions import AttemptReport, Cancel, CheckWorker, Commit, DropOutput, Fail, Finish, Launch
from engine.mapreduce.scheduler import Scheduler, SchedulerConfig
from engine.mapreduce.takeover import Takeover, adopted_workers, collect_adopted
from engine.mapreduce.task_table import TaskState, TaskTable
from tests.fakes import FakeTime

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ERROR = ErrorDescription("ValueError", "bad input\nmore detail")


def scheduler(maps: int = 2, reduces: int = 2, time: FakeTime | None = None, **config: object) -> Scheduler:
    table = TaskTable.for_job([InputSplit("text", "/in", 10 * i, 10 * i + 10) for i in range(maps)], reduces)
    settings = {"speculation": False, **config}
    return Scheduler(table, SchedulerConfig(**settings), (time or FakeTime()).clock)


def launches(actions: list) -> list[tuple[str, str, bool]]:
    return [(a.task_id, a.worker, a.speculative) for a in actions if isinstance(a, Launch)]


def ok(launch: Launch, elapsed: float = 1.0, counters: dict | None = None) -> AttemptReport:
    return AttemptReport(launch.task_id, launch.attempt, launch.worker, launch.kind, elapsed,
                         counters or {"map_input_records": 1}, path=f"/out/part-{launch.partition}")


def test_maps_go_to_the_least_loaded_worker_and_reduces_wait_for_every_map() -> None:
    jobs = scheduler(maps=3, reduces=2, slots_per_worker=2)
    first = jobs.worker_joined("a")
    assert launches(first) == [("map-00000", "a", False), ("map-00001", "a", False)]
    second = jobs.worker_joined("b")
    assert launches(second) == [("map-00002", "b", False)]
    done = jobs.succeeded(ok(first[0]))
    assert launches(done) == []  # maps still running: no reduce may start
    jobs.succeeded(ok(first[1]))
    reduces = jobs.succeeded(ok(second[0]))
    assert launches(reduces) == [("reduce-00000", "a", False), ("reduce-00001", "b", False)]
    assert reduces[-1].sources == {"a": (("map-00000", 1), ("map-00001", 1)), "b": (("map-00002", 1),)}


def test_late_duplicate_and_foreign_replies_are_refused() -> None:
    jobs = scheduler(maps=1, reduces=1)
    launch = jobs.worker_joined("a")[0]
    jobs.worker_joined("b")
    assert jobs.succeeded(AttemptReport("map-00000", 1, "b", "map")) == [DropOutput("b", (("map-00000", 1),))]
    accepted = jobs.succeeded(ok(launch))
    assert [type(a) for a in accepted] == [Commit, Launch]
    assert jobs.succeeded(ok(launch)) == []  # the duplicate: its output is the one in use, not dropped
    assert jobs.succeeded(AttemptReport("map-99999", 1, "a", "map")) == []
    assert jobs.table.tasks["map-00000"].executions == 1


def test_a_failed_attempt_is_retried_then_fails_the_job_in_one_line() -> None:
    jobs = scheduler(maps=1, reduces=1, max_task_attempts=2)
    launch = jobs.worker_joined("a")[0]
    retry = jobs.failed("map-00000", launch.attempt, "a", ERROR)
    assert launches(retry) == [("map-00000", "a", False)] and retry[0].attempt == 2
    assert jobs.failed("map-00000", 1, "a", ERROR) == []  # a stale failure counts nothing
    final = jobs.failed("map-00000", 2, "a", ERROR)
    assert len(final) == 1 and isinstance(final[0], Fail)
    assert str(final[0].error) == "task map-00000 failed 2 times; last error: ValueError: bad input"
    assert jobs.worker_joined("b") == [] and jobs.status()["state"] == "failed"


def test_a_lost_worker_ends_its_attempts_and_loses_its_map_outputs() -> None:
    jobs = scheduler(maps=2, reduces=1)
    first = jobs.worker_joined("a")[0]
    second = jobs.worker_joined("b")[0]
    jobs.succeeded(ok(first))
    rerun = jobs.worker_lost("a")
    assert launches(rerun) == []  # b is busy with map-00001
    assert jobs.table.tasks["map-00000"].state is TaskState.IDLE
    assert jobs.table.tasks["map-00000"].failures == 0
    assert launches(jobs.succeeded(ok(second))) == [("map-00000", "b", False)]
    assert jobs.succeeded(ok(first)) == []  # the dead worker's late reply


def test_a_reduce_that_cannot_fetch_is_not_blamed_and_the_maps_run_again() -> None:
    jobs = scheduler(maps=2, reduces=1)
    a, b = jobs.worker_joined("a")[0], jobs.worker_joined("b")[0]
    jobs.succeeded(ok(a))
    reduce = [x for x in jobs.succeeded(ok(b)) if isinstance(x, Launch)][0]
    actions = jobs.map_output_lost(reduce.task_id, reduce.attempt, reduce.worker, [("map-00001", 1)], ["b"])
    assert DropOutput("b", (("map-00001", 1),)) in actions and CheckWorker("b") in actions
    assert launches(actions) == [("map-00001", "a", False)]
    assert jobs.table.tasks[reduce.task_id].failures == 0
    assert jobs.table.tasks[reduce.task_id].state is TaskState.IDLE


def only_launch(actions: list) -> Launch:
    found = [a for a in actions if isinstance(a, Launch)]
    assert len(found) == 1, actions
    return found[0]


def test_backup_attempts_near_the_end_of_a_phase_and_the_first_to_finish_wins() -> None:
    time = FakeTime()
    jobs = scheduler(maps=4, reduces=1, time=time, speculation=True, speculation_after=0.75, speculation_min_s=1.0)
    m0, m1 = only_launch(jobs.worker_joined("a")), only_launch(jobs.worker_joined("b"))
    time.sleep(2.0)
    m2 = only_launch(jobs.succeeded(ok(m0, elapsed=5.0)))
    time.sleep(2.0)
    m3 = only_launch(jobs.succeeded(ok(m2, elapsed=5.0)))
    time.sleep(3.0)
    # 3 of 4 done; map-00001 has run 7 s, not more than 1.5 x the median task time (5 s)
    assert launches(jobs.succeeded(ok(m3, elapsed=5.0))) == []
    time.sleep(1.0)
    backup = only_launch(jobs.tick())
    assert (backup.task_id, backup.worker, backup.speculative, backup.attempt) == ("map-00001", "a", True, 2)
    assert launches(jobs.tick()) == []  # one backup per task
    won = jobs.succeeded(ok(backup, elapsed=0.5))
    assert Cancel("map-00001", 1, "b") in won
    task = jobs.table.tasks["map-00001"]
    assert (task.location, task.executions, task.speculative_attempts) == ("a", 1, 1)
    assert jobs.succeeded(ok(m1)) == [DropOutput("b", (("map-00001", 1),))]


def test_no_backup_attempts_before_the_end_of_a_phase() -> None:
    time = FakeTime()
    jobs = scheduler(maps=2, reduces=1, time=time, speculation=True, speculation_after=0.75, speculation_min_s=1.0)
    m0 = only_launch(jobs.worker_joined("a"))
    jobs.worker_joined("b")
    time.sleep(1.0)
    jobs.succeeded(ok(m0, elapsed=0.1))
    time.sleep(100.0)
    assert launches(jobs.tick()) == []  # 1 of 2 maps done is below speculation_after


def test_too_many_bad_records_fail_the_job_when_the_maps_are_done() -> None:
    jobs = scheduler(maps=1, reduces=1, max_bad_record_fraction=0.1)
    launch = jobs.worker_joined("a")[0]
    actions = jobs.succeeded(ok(launch, counters={"map_input_records": 10, "bad_records_skipped": 2}))
    assert isinstance(actions[-1], Fail) and isinstance(actions[-1].error, TooManyBadRecordsError)


def test_counters_count_each_task_once_and_the_job_finishes_once() -> None:
    jobs = scheduler(maps=1, reduces=1)
    launch = jobs.worker_joined("a")[0]
    reduce = [x for x in jobs.succeeded(ok(launch, counters={"n": 5})) if isinstance(x, Launch)][0]
    end = jobs.succeeded(ok(reduce, counters={"n": 7}))
    assert end[-1] == Finish({"n": 12})
    assert jobs.succeeded(ok(reduce, counters={"n": 7})) == [] and jobs.tick() == []


def test_takeover_keeps_held_outputs_adopts_attempts_and_forgets_the_rest() -> None:
    time = FakeTime()
    old = scheduler(maps=3, reduces=1, time=time)
    m0, m1 = only_launch(old.worker_joined("a")), only_launch(old.worker_joined("b"))
    m2 = only_launch(old.succeeded(ok(m0)))
    old.succeeded(ok(m1))
    state = json.loads(json.dumps(old.snapshot_state()))
    assert state["workers"] == ["a", "b"] and m2.worker == "a"
    takeover = Takeover(state, SchedulerConfig(speculation=False), time.clock)
    # a still holds map-00000 and still runs map-00002; b (holding map-00001) is gone
    takeover.worker_reported("a", [("map-00002", 1)], [ok(m0)], [("map-00000", 1)])
    takeover.worker_unreachable("b")
    jobs, actions = takeover.finish()
    assert actions == []  # map-00001 must run again, but a is busy
    assert [jobs.table.tasks[t].state for t in ("map-00000", "map-00001", "map-00002")] == \
        [TaskState.COMPLETED, TaskState.IDLE, TaskState.IN_PROGRESS]
    assert jobs.table.tasks["map-00000"].executions == 1  # the old report is not counted again
    assert jobs.lost == ["b"] and adopted_workers(jobs) == ["a"]
    finished = collect_adopted(jobs, "a", [], [ok(m2)])
    assert isinstance(finished[0], Commit)
    rerun = only_launch(finished)
    assert (rerun.task_id, rerun.worker, rerun.attempt) == ("map-00001", "a", 2)
    assert jobs.succeeded(ok(m2)) == [] and jobs.table.tasks["map-00002"].executions == 1


def test_an_attempt_gone_from_its_worker_after_a_takeover_runs_again() -> None:
    old = scheduler(maps=1, reduces=1)
    old.worker_joined("a")
    takeover = Takeover(json.loads(json.dumps(old.snapshot_state())), SchedulerConfig(speculation=False))
    takeover.worker_reported("a", [("map-00000", 1)], [], [])
    jobs, _ = takeover.finish()
    rerun = only_launch(collect_adopted(jobs, "a", [], []))
    assert (rerun.task_id, rerun.attempt) == ("map-00000", 2) and jobs.table.tasks["map-00000"].failures == 1


def imports(path: Path) -> set[str]:
    """The modules a source file imports (at any depth, lazily or not)."""
    tree = ast.parse(path.read_text())
    found = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return found | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_scheduling_cores_never_import_ray() -> None:
    cores = ["actions", "config", "heartbeat", "rules", "scheduler", "snapshot", "takeover", "task_table", "tasks",
             "worker_state", "local", "counters", "result", "spec", "executors"]
    shells = {"engine.cluster", "engine.runtime.supervisor", "engine.mapreduce.master",
              "engine.mapreduce.coordinator", "engine.mapreduce.worker", "engine.mapreduce.handle"}
    for name in cores:
        found = imports(ROOT / "engine" / "mapreduce" / f"{name}.py")
        assert not {m for m in found if m.split(".")[0] == "ray" or m in shells}, name


def test_masters_never_import_the_supervisor() -> None:
    """The supervisor creates masters and workers; they get its handle, not its module."""
    users = {p.name for p in (ROOT / "engine" / "mapreduce").glob("*.py")
             if "engine.runtime.supervisor" in imports(p)}
    assert users == {"submit.py"}


def test_job_failed_error_is_what_a_failure_raises() -> None:
    assert issubclass(TooManyBadRecordsError, JobFailedError)
