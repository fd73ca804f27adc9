"""Unit tests: single flow-core rules, event by event (no Ray)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.io.sources import SourceBatch
from engine.pipeline.flow import events as ev
from engine.pipeline.flow.core import FlowCore
from engine.pipeline.flow.plan import FlowPlan, StagePlan
from engine.pipeline.spec import AutoscalePolicy

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def batch(xs: list[int], keys: list[int] | None = None) -> ev.BatchRead:
    columns = {"x": pa.array(xs, pa.int64())}
    if keys is not None:
        columns["k"] = pa.array(keys, pa.int64())
    return ev.BatchRead(SourceBatch(pa.table(columns), "mem", np.arange(len(xs))))


def meta(rows: int, parts: int = 1) -> dict:
    return {"rows_in": rows, "rows_out": rows, "part_rows": [rows] + [0] * (parts - 1), "errors": 0, "dead": [],
            "busy_s": 0.0}


def of(kind: type, actions: list[ev.Action]) -> list:
    return [a for a in actions if isinstance(a, kind)]


def test_the_flow_modules_never_import_ray() -> None:
    shared = ["flow/events.py", "flow/plan.py", "flow/pipes.py", "flow/core.py", "flow/ledger.py", "flow/replicas.py",
              "local.py", "shell.py",
              "handle.py", "delivery.py", "filtering.py", "ordering.py", "autoscale.py", "batches.py"]
    for name in shared:
        tree = ast.parse((ROOT / "engine" / "pipeline" / name).read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "ray" not in imported, f"engine/pipeline/{name} imports ray"


def test_a_slow_sink_stops_reading_and_an_ordered_sink_pipe_stays_bounded() -> None:
    # The oldest batch may pass full pipes between stages, but into the sink it waits for
    # the deliveries not yet committed: a stalled sink must stop the source.
    core = FlowCore(FlowPlan((StagePlan("a", replicas=2, pipe_capacity=1),), ordered=True, sink_capacity=1,
                             inflight_per_replica=1))
    core.start()
    pending: list[ev.Submit] = []
    delivered = reads = 0
    for _ in range(50):
        if core.wants_input():
            reads += 1
            actions = core.handle(batch([reads]))
        elif pending:
            call = pending.pop(0)
            actions = core.handle(ev.CallCompleted(call.call_id, meta(1), (call.payload,)))
        else:
            break
        pending += of(ev.Submit, actions)
        delivered += len(of(ev.Deliver, actions))
        assert core.sink_depth() <= 2 * 1 + 1
    assert delivered == 1 and reads <= 3 and not core.wants_input()  # nothing is committed, so it stops


def test_a_dead_replica_s_calls_are_resent_in_order_to_its_replacement_and_late_results_ignored() -> None:
    core = FlowCore(FlowPlan((StagePlan("a", replicas=1, pipe_capacity=4),), inflight_per_replica=3))
    (start,) = core.start()
    submits = []
    for x in range(3):
        submits += of(ev.Submit, core.handle(batch([x])))
    assert [s.name for s in submits] == [(0,), (1,), (2,)]
    actions = core.handle(ev.ReplicaDied(0, start.replica))
    (replacement,) = of(ev.StartReplica, actions)
    assert replacement.replaces == start.replica
    resent = of(ev.Submit, actions)
    assert [s.name for s in resent] == [(0,), (1,), (2,)] and {s.replica for s in resent} == {replacement.replica}
    assert core.handle(ev.CallCompleted(submits[0].call_id, meta(1), (submits[0].payload,))) == []  # lost call
    assert core.metrics()["a"].replica_restarts == 1 and core.metrics()["a"].batches_in == 0
    delivered = of(ev.Deliver, core.handle(ev.CallCompleted(resent[0].call_id, meta(1), (resent[0].payload,))))
    assert [d.name for d in delivered] == [(0,)]


def test_a_keyed_first_stage_splits_each_batch_by_key_and_routes_pieces_to_their_slot() -> None:
    core = FlowCore(FlowPlan((StagePlan("a", replicas=2, key="k", pipe_capacity=4),)))
    core.start()
    submits = of(ev.Submit, core.handle(batch(list(range(20)), [i % 5 for i in range(20)])))
    slots = core.replicas(0)
    owner: dict[int, int] = {}
    for submit in submits:
        for key in submit.payload["k"].to_pylist():
            assert owner.setdefault(key, submit.replica) == submit.replica
    assert sorted(x for s in submits for x in s.payload["x"].to_pylist()) == list(range(20))
    assert {s.replica for s in submits} <= set(slots) and all(len(s.name) == 2 for s in submits)


def test_the_autoscaler_grows_a_backed_up_stage_and_retires_a_replica_once_idle() -> None:
    now = {"t": 0.0}
    policy = AutoscalePolicy(1, 2, high_water=2, low_water=1, sustain_s=1.0)
    core = FlowCore(FlowPlan((StagePlan("a", replicas=1, pipe_capacity=4, autoscale=policy),),
                             inflight_per_replica=1), clock=lambda: now["t"])
    core.start()
    submits = of(ev.Submit, core.handle(batch([1]))) + of(ev.Submit, core.handle(batch([2])))
    assert len(submits) == 1  # one replica, one call at a time: batch 2 waits
    core.handle(ev.Tick())
    now["t"] = 0.5
    assert of(ev.StartReplica, core.handle(ev.Tick())) == []  # not sustained yet
    now["t"] = 1.0
    actions = core.handle(ev.Tick())
    assert len(of(ev.StartReplica, actions)) == 1 and [s.name for s in of(ev.Submit, actions)] == [(1,)]
    second = of(ev.Submit, actions)[0]
    core.handle(ev.SourceEnded())
    first_done = core.handle(ev.CallCompleted(submits[0].call_id, meta(1), (submits[0].payload,)))
    core.handle(ev.SinkCommitted(of(ev.Deliver, first_done)[0].name))
    core.handle(ev.Tick())
    now["t"] = 2.5
    assert of(ev.RetireReplica, core.handle(ev.Tick())) == []  # the newest replica still has its call
    assert core.metrics()["a"].replicas == 1
    actions = core.handle(ev.CallCompleted(second.call_id, meta(1), (second.payload,)))
    assert of(ev.RetireReplica, actions) == [ev.RetireReplica(0, second.replica)]
    assert of(ev.Finish, core.handle(ev.SinkCommitted((1,)))) == [ev.Finish("completed")]


@pytest.mark.parametrize("event, message", [
    (ev.SourceFailed(OSError("disk gone")), "source source failed: OSError: disk gone"),
    (ev.SinkFailed(ValueError("no table")), "sink sink failed: ValueError: no table"),
    (ev.ReplicaStartFailed(0, 0, "cannot unpickle"), "stage 'a': a replica failed to start: cannot unpickle"),
])
def test_failures_end_the_run_with_one_line_naming_what_failed(event: ev.Event, message: str) -> None:
    core = FlowCore(FlowPlan((StagePlan("a"),)))
    core.start()
    (fail,) = core.handle(event)
    assert isinstance(fail, ev.Fail) and str(fail.error) == message and core.outcome == "failed"
    assert core.handle(batch([1])) == [] and not core.wants_input()


def test_a_failed_call_names_its_stage_and_a_missing_key_column_is_named() -> None:
    core = FlowCore(FlowPlan((StagePlan("a"), StagePlan("b"))))
    core.start()
    (submit,) = of(ev.Submit, core.handle(batch([1])))
    (fail,) = core.handle(ev.CallFailed(submit.call_id, "KeyError: no column", KeyError("no column")))
    assert str(fail.error) == "stage 'a' failed: KeyError: no column"
    keyed = FlowCore(FlowPlan((StagePlan("keyed", replicas=2, key="user"),)))
    keyed.start()
    (fail,) = keyed.handle(batch([1, 2]))
    assert isinstance(fail, ev.Fail) and "stage 'keyed' failed" in str(fail.error)
    assert "key column 'user' is not in the batch" in str(fail.error)


def test_too_many_replica_deaths_fail_the_run() -> None:
    core = FlowCore(FlowPlan((StagePlan("a"),), max_replica_restarts=2))
    replica = core.start()[0].replica
    for _ in range(2):
        replica = of(ev.StartReplica, core.handle(ev.ReplicaDied(0, replica)))[0].replica
    (fail,) = of(ev.Fail, core.handle(ev.ReplicaDied(0, replica)))
    assert str(fail.error) == "stage 'a': replicas died 3 times (more than max_replica_restarts=2)"


def test_cancel_finishes_at_once_and_later_events_are_ignored() -> None:
    core = FlowCore(FlowPlan((StagePlan("a"),)))
    core.start()
    (submit,) = of(ev.Submit, core.handle(batch([1])))
    assert core.handle(ev.Cancel()) == [ev.Finish("cancelled")]
    assert core.handle(ev.CallCompleted(submit.call_id, meta(1), (submit.payload,))) == []
    assert core.outcome == "cancelled"


def test_reading_without_room_is_refused_and_commits_of_unknown_names_are_ignored() -> None:
    core = FlowCore(FlowPlan((StagePlan("a", pipe_capacity=1),)))
    core.start()
    core.handle(batch([1]))
    assert not core.wants_input()
    with pytest.raises(RuntimeError, match="no room"):
        core.handle(batch([2]))
    assert core.handle(ev.SinkCommitted((7,))) == [] and core.metrics()["sink"].batches_in == 0


def test_a_drained_run_delivers_what_was_read_then_finishes_drained() -> None:
    core = FlowCore(FlowPlan((StagePlan("a"),)))
    core.start()
    (submit,) = of(ev.Submit, core.handle(batch([1, 2])))
    assert of(ev.Finish, core.handle(ev.SourceEnded(exhausted=False))) == []
    (deliver,) = of(ev.Deliver, core.handle(ev.CallCompleted(submit.call_id, meta(2), (submit.payload,))))
    assert deliver.batch_name == "000000000" and deliver.rows == 2
    assert core.handle(ev.SinkCommitted(deliver.name)) == [ev.Finish("drained")]
    with pytest.raises(RuntimeError, match="before start"):
        FlowCore(FlowPlan((StagePlan("a"),))).handle(ev.Tick())


def _run_to_the_end(core: FlowCore, tables: list[list[int]]) -> list[str]:
    """Drive ``core`` over batches of ``x`` (key ``x % 3``), completing every call at once
    (splitting by key like a replica) and committing every delivery; the batch names delivered."""
    from engine.pipeline.batches import split_by_key

    core.start()
    todo, delivered = list(tables), []
    work: list[ev.Action] = []
    while not core.finished:
        if work:
            action = work.pop(0)
            if isinstance(action, ev.Submit):
                parts = split_by_key(action.payload, action.next_key, action.parts) if action.parts > 1 \
                    else [action.payload]
                rows = [part.num_rows for part in parts]
                done = {"rows_in": sum(rows), "rows_out": sum(rows), "part_rows": rows, "errors": 0, "dead": [],
                        "busy_s": 0.0}
                work += core.handle(ev.CallCompleted(action.call_id, done, tuple(parts)))
            elif isinstance(action, ev.Deliver):
                delivered.append(action.batch_name)
                work += core.handle(ev.SinkCommitted(action.name))
        elif todo and core.wants_input():
            xs = todo.pop(0)
            work += core.handle(batch(xs, [x % 3 for x in xs]))
        elif not todo:
            work += core.handle(ev.SourceEnded())
        else:
            raise AssertionError("stalled")
    assert core.outcome == "completed"
    return delivered


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 50), min_size=1, max_size=8), max_size=12), st.data())
def test_a_resumed_core_delivers_exactly_the_batches_the_earlier_run_did_not_commit(
        tables: list[list[int]], data: st.DataObject) -> None:
    plan = FlowPlan((StagePlan("a", replicas=2), StagePlan("b", replicas=2, key="k")), ordered=True)
    every = _run_to_the_end(FlowCore(plan), tables)
    assert len(every) == len(set(every))
    earlier = data.draw(st.sets(st.sampled_from(every)) if every else st.just(set()))
    resumed = FlowCore(plan)
    resumed.resume_from(frozenset(earlier))
    again = _run_to_the_end(resumed, tables)
    assert sorted(again) == sorted(set(every) - earlier)  # nothing twice, nothing lost
    assert resumed.ledger.skipped_batches == len(earlier)
    with pytest.raises(RuntimeError, match="after start"):
        resumed.resume_from(frozenset())
