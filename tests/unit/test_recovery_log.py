"""The recovery timeline of a job: what a lost worker made run again and when the job had
made up for it, checked against hand-worked timelines."""

from __future__ import annotations

import pytest

from engine.io.splits import InputSplit
from engine.mapreduce.actions import AttemptReport, Launch
from engine.mapreduce.recovery_log import RecoveryLog
from engine.mapreduce.scheduler import Scheduler, SchedulerConfig
from engine.mapreduce.task_table import TaskTable
from tests.fakes import FakeTime

pytestmark = pytest.mark.unit


def test_a_loss_is_recovered_once_every_task_it_requeued_completed_again() -> None:
    log = RecoveryLog()
    log.lost("w1", "died", now=10.0, rerun=("map-1", "map-2"), node="n1", node_dead=True, unix=1_800_000_000.5)
    log.completed("map-1", now=11.0)
    assert log.to_json(origin=4.0, now=11.5)["losses"][0]["recovered_at_s"] is None
    log.completed("map-3", now=12.0)  # not one it re-queued
    log.completed("map-2", now=13.0)
    timeline = log.to_json(origin=4.0, now=20.0)
    assert timeline == {"losses": [{"worker": "w1", "node": "n1", "node_dead": True, "why": "died",
                                    "noticed_at_s": 6.0, "noticed_at_unix": 1_800_000_000.5, "tasks_rerun": 2, "rerun": ["map-1", "map-2"],
                                    "recovered_at_s": 9.0}],
                        "tasks_rerun": 2, "recovering_s": 3.0}


def test_overlapping_losses_count_their_recovery_time_once_and_open_ones_up_to_now() -> None:
    log = RecoveryLog()
    log.lost("a", "died", now=0.0, rerun=("m1",))
    log.lost("b", "died", now=1.0, rerun=("m2",))
    log.lost("c", "died", now=1.5, rerun=())  # held nothing: recovered at once
    log.completed("m1", now=2.0)
    log.completed("m2", now=4.0)
    log.lost("d", "died", now=10.0, rerun=("m3",))
    assert log.recovering_s(now=12.0) == pytest.approx(4.0 + 2.0)  # [0, 4] and [10, now]


def test_the_scheduler_records_each_lost_worker_with_its_requeued_tasks() -> None:
    time = FakeTime()
    table = TaskTable.for_job([InputSplit("text", "/in", 10 * i, 10 * i + 10) for i in range(3)], 1)
    jobs = Scheduler(table, SchedulerConfig(speculation=False), time.clock)
    pending = [a for a in jobs.worker_joined("a") + jobs.worker_joined("b") if isinstance(a, Launch)]

    def finish(launch: Launch) -> None:
        pending.remove(launch)
        report = AttemptReport(launch.task_id, launch.attempt, launch.worker, launch.kind, 1.0, {})
        pending.extend(a for a in jobs.succeeded(report) if isinstance(a, Launch))

    time.sleep(1.0)
    finish(next(a for a in pending if a.worker == "a"))  # a holds map-00000 and runs map-00002
    time.sleep(1.0)
    pending[:] = [a for a in pending if a.worker != "a"]
    pending.extend(a for a in jobs.worker_lost("a", "its node died", node="node-1", node_dead=True)
                   if isinstance(a, Launch))
    loss = jobs.status()["recovery"]["losses"][0]
    assert loss["rerun"] == ["map-00000", "map-00002"]  # its output and its running map
    assert loss["noticed_at_s"] == 2.0 and loss["recovered_at_s"] is None
    while any(a.kind == "map" for a in pending):
        time.sleep(1.5)
        finish(next(a for a in pending if a.kind == "map"))
    recovery = jobs.summary()["recovery"]
    # b finishes map-00001 at 3.5, then the two re-queued maps at 5.0 and 6.5
    assert recovery["losses"][0]["node"] == "node-1" and recovery["losses"][0]["node_dead"]
    assert recovery["losses"][0]["recovered_at_s"] == 6.5
    assert recovery["tasks_rerun"] == 2 and recovery["recovering_s"] == 4.5
