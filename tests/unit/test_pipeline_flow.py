"""Unit tests: the flow core as a state machine fed events in any order (no Ray).

A ``RuleBasedStateMachine`` plays executor: it reads batches when the core lets it,
completes calls in any order, kills replicas with calls in flight (and lets their lost
calls complete late), commits deliveries slowly, scales stages and moves the clock.
Filters run for real (``process_batch``); what reaches the sink is compared with a
plain-Python oracle of each row's fate.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.common.retry import RetryPolicy
from engine.io.sources import BadRecord, SourceBatch
from engine.pipeline.filtering import LinkStage, process_batch
from engine.pipeline.flow import events as ev
from engine.pipeline.flow.core import FlowCore
from engine.pipeline.flow.plan import FlowPlan, StagePlan
from engine.pipeline.spec import AutoscalePolicy

pytestmark = pytest.mark.unit

NO_RETRY = RetryPolicy(max_attempts=1, base_delay_s=0.0, jitter=0.0)


def drop_multiples_of_3(batch: pa.Table) -> pa.Table:
    return batch.filter(pa.array(batch["x"].to_numpy() % 3 != 0))


def fail_on_5_mod_7(batch: pa.Table) -> pa.Table:
    if bool(np.any(batch["x"].to_numpy() % 7 == 5)):
        raise ValueError("x = 5 mod 7")
    return batch


FILTERS = {"identity": lambda batch: batch, "drop3": drop_multiples_of_3, "fail5": fail_on_5_mod_7}


def fate(x: int, kinds: list[str]) -> str:
    """The plain-Python oracle: what happens to row ``x`` going through the stages."""
    for kind in kinds:
        if kind == "drop3" and x % 3 == 0:
            return "dropped"
        if kind == "fail5" and x % 7 == 5:
            return "dead"
    return "delivered"


@st.composite
def setups(draw: st.DrawFn) -> tuple[FlowPlan, list[list[str]], list[tuple[list[int], int]]]:
    stages, kinds = [], []
    for index in range(draw(st.integers(1, 3))):
        # A link: a stage and 0-2 stages chained after it, each with its own filter.
        link_kinds = draw(st.lists(st.sampled_from(sorted(FILTERS)), min_size=1, max_size=3))
        kinds.append(link_kinds)
        policy = AutoscalePolicy(1, 3, high_water=2, low_water=0, sustain_s=1.0) if draw(st.booleans()) else None
        members = tuple(f"s{index}c{j}" for j in range(1, len(link_kinds)))
        stages.append(StagePlan(f"s{index}", draw(st.integers(1, 3)), "k" if draw(st.booleans()) else None,
                                draw(st.integers(1, 3)), policy, members))
    plan = FlowPlan(tuple(stages), ordered=draw(st.booleans()), sink_capacity=draw(st.integers(1, 3)),
                    inflight_per_replica=draw(st.integers(1, 2)), max_replica_restarts=10**6)
    batches = draw(st.lists(st.tuples(st.lists(st.integers(0, 5), max_size=6), st.integers(0, 2)), max_size=7))
    return plan, kinds, batches


class FlowMachine(RuleBasedStateMachine):
    """Plays an executor against one ``FlowCore``; checks bounds, exactly-once, order, the end."""

    @initialize(setup=setups())
    def start(self, setup: tuple[FlowPlan, list[list[str]], list[tuple[list[int], int]]]) -> None:
        self.plan, self.kinds, self.batches = setup
        self.now = 0.0
        self.core = FlowCore(self.plan, clock=lambda: self.now)
        self.calls: dict[int, ev.Submit] = {}
        self.stale: list[ev.Submit] = []
        self.sink_queue: deque[ev.Deliver] = deque()
        self.delivered_names: list[tuple[int, ...]] = []
        self.delivered_x: list[int] = []
        self.delivered_k: list[int] = []
        self.committed: set[tuple[int, ...]] = set()
        self.dead_x: list[int] = []
        self.bad_seen = self.bad_read = 0
        self.read_x: list[int] = []
        self.next_batch = self.next_x = 0
        self.source_ended = False
        self.status: str | None = None
        self.alive: list[set[int]] = [set() for _ in self.plan.stages]
        self.max_replicas = [stage.replicas for stage in self.plan.stages]
        self.resized: set[int] = set()
        self.key_slot: dict[tuple[int, int], int] = {}
        self.exhausted = False
        self.started = False
        self.apply(self.core.start())
        self.started = True

    # -- the executor's side -----------------------------------------------------------

    def feed(self, event: ev.Event) -> list[ev.Action]:
        actions = self.core.handle(event)
        self.apply(actions)
        return actions

    def apply(self, actions: list[ev.Action]) -> None:
        for action in actions:
            assert self.status is None, f"{action} after the run finished"
            if isinstance(action, ev.Submit):
                assert action.replica in self.alive[action.stage]
                self.calls[action.call_id] = action
                self._check_affinity(action)
            elif isinstance(action, ev.Deliver):
                assert action.name not in self.delivered_names, f"{action.name} delivered twice"
                if self.plan.ordered and self.delivered_names:
                    assert action.name > self.delivered_names[-1], "ordered run delivered out of source order"
                self.delivered_names.append(action.name)
                self.sink_queue.append(action)
            elif isinstance(action, ev.StartReplica):
                if action.replaces is None and self.started:
                    self.resized.add(action.stage)  # scaled up (not a replacement)
                self.alive[action.stage].add(action.replica)
            elif isinstance(action, ev.RetireReplica):
                assert not [c for c in self.calls.values() if (c.stage, c.replica) == (action.stage, action.replica)]
                self.alive[action.stage].remove(action.replica)
                self.resized.add(action.stage)
            elif isinstance(action, ev.RecordDead):
                if action.step == "read":
                    self.bad_seen += action.groups[0][0].num_rows
                    assert action.source["file"] == "mem" and len(action.source["offsets"]) == action.groups[0][0].num_rows
                else:
                    assert action.step in [i for s in self.plan.stages for i in s.stage_ids]
                    self.dead_x += [x for rows, _, _ in action.groups for x in rows["x"].to_pylist()]
            elif isinstance(action, ev.Finish):
                self.status = action.status
            else:
                raise AssertionError(f"the run failed: {action}")
        for index in range(len(self.plan.stages)):
            self.max_replicas[index] = max(self.max_replicas[index], len(self.core.replicas(index)))

    def _check_affinity(self, submit: ev.Submit) -> None:
        """A keyed stage whose replica count never changed sends each key to one slot."""
        stage = self.plan.stages[submit.stage]
        if stage.key is None or submit.stage in self.resized:
            return
        slot = self.core.replicas(submit.stage).index(submit.replica)
        for key in set(submit.payload["k"].to_pylist()):  # type: ignore[index]
            assert self.key_slot.setdefault((submit.stage, key), slot) == slot, f"key {key} changed replica"

    def run_call(self, submit: ev.Submit) -> ev.CallCompleted:
        stage = self.plan.stages[submit.stage]
        link = [LinkStage(i, FILTERS[kind], NO_RETRY) for i, kind in zip(stage.stage_ids, self.kinds[submit.stage])]
        meta, parts = process_batch(link, submit.payload, submit.next_key, submit.parts)  # type: ignore[arg-type]
        return ev.CallCompleted(submit.call_id, meta, tuple(parts))

    # -- rules -------------------------------------------------------------------------

    @precondition(lambda self: self.status is None and self.next_batch < len(self.batches) and self.core.wants_input())
    @rule()
    def read(self) -> None:
        keys, bad = self.batches[self.next_batch]
        self.next_batch += 1
        xs = list(range(self.next_x, self.next_x + len(keys)))
        self.next_x += len(keys)
        table = pa.table({"k": pa.array(keys, pa.int64()), "x": pa.array(xs, pa.int64())})
        records = tuple(BadRecord("mem", 1000 + i, "invalid UTF-8", b"\xff") for i in range(bad))
        self.read_x += xs
        self.bad_read += bad
        self.feed(ev.BatchRead(SourceBatch(table, "mem", np.arange(len(keys)), records)))

    @precondition(lambda self: self.status is None and not self.source_ended and self.next_batch == len(self.batches))
    @rule()
    def source_exhausted(self) -> None:
        self.source_ended = self.exhausted = True
        self.feed(ev.SourceEnded(exhausted=True))

    @precondition(lambda self: self.status is None and not self.source_ended)
    @rule()
    def drain(self) -> None:
        self.source_ended = True
        self.feed(ev.SourceEnded(exhausted=False))

    @precondition(lambda self: self.status is None and self.calls)
    @rule(pick=st.integers(0, 10**6))
    def complete(self, pick: int) -> None:
        call_id = sorted(self.calls)[pick % len(self.calls)]
        self.feed(self.run_call(self.calls.pop(call_id)))

    @precondition(lambda self: self.status is None and self.stale)
    @rule(pick=st.integers(0, 10**6))
    def lost_call_completes_late(self, pick: int) -> None:
        lost = self.stale.pop(pick % len(self.stale))
        before = self.core.metrics()
        assert self.feed(self.run_call(lost)) == []
        assert self.core.metrics() == before

    @precondition(lambda self: self.status is None)
    @rule(pick=st.integers(0, 10**6), busy=st.booleans())
    def kill_replica(self, pick: int, busy: bool) -> None:
        if busy and self.calls:
            victim = sorted((c.stage, c.replica) for c in self.calls.values())[pick % len(self.calls)]
        else:
            candidates = sorted((s, r) for s, alive in enumerate(self.alive) for r in alive)
            victim = candidates[pick % len(candidates)]
        lost = [c for c in self.calls.values() if (c.stage, c.replica) == victim]
        for call in lost:
            del self.calls[call.call_id]
        self.stale += lost
        self.alive[victim[0]].discard(victim[1])
        actions = self.feed(ev.ReplicaDied(*victim))
        resent = {a.name for a in actions if isinstance(a, ev.Submit)}
        waiting = {p.name for p in self.core.stages[victim[0]].ready}
        assert {c.name for c in lost} <= resent | waiting, "a lost call was neither resent nor queued"

    @precondition(lambda self: self.status is None and self.sink_queue)
    @rule()
    def commit(self) -> None:
        delivery = self.sink_queue.popleft()
        self.committed.add(delivery.name)
        self.delivered_x += delivery.payload["x"].to_pylist()  # type: ignore[index]
        self.delivered_k += delivery.payload["k"].to_pylist()  # type: ignore[index]
        self.feed(ev.SinkCommitted(delivery.name))

    @precondition(lambda self: self.status is None)
    @rule(stage=st.integers(0, 2), replicas=st.integers(1, 3))
    def scale(self, stage: int, replicas: int) -> None:
        stage %= len(self.plan.stages)
        if replicas != len(self.core.replicas(stage)):
            self.resized.add(stage)
        self.feed(ev.ScaleRequested(stage, replicas))

    @precondition(lambda self: self.status is None)
    @rule(seconds=st.sampled_from([0.0, 0.4, 1.5]))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.feed(ev.Tick())

    @precondition(lambda self: self.status is not None)
    @rule(which=st.integers(0, 3))
    def events_after_the_end_are_ignored(self, which: int) -> None:
        event = [ev.Tick(), ev.ScaleRequested(0, 2), ev.Cancel(), ev.SourceEnded()][which]
        before = self.core.metrics()
        assert self.core.handle(event) == [] and self.core.metrics() == before

    # -- invariants --------------------------------------------------------------------

    def _units_per_batch(self) -> int:
        """The most pieces one source batch can become (one split per keyed stage)."""
        return math.prod(n for n, s in zip(self.max_replicas, self.plan.stages) if s.key is not None)

    @invariant()
    def pipes_stay_bounded(self) -> None:
        units = self._units_per_batch()
        for index, stage in enumerate(self.plan.stages):
            bundle = self.max_replicas[index] if stage.key is not None else 1
            head = self.core.head_units(index)
            assert head <= units
            assert self.core.pipe_depth(index) <= max(stage.pipe_capacity, bundle) + head, f"pipe {stage.id} overflowed"
        sink = self.core.pipe_depth(len(self.plan.stages))
        if self.plan.ordered:
            assert sink <= 2 * self.plan.sink_capacity + units, "the sink's pipe overflowed"
        else:
            assert sink <= self.plan.sink_capacity, "the sink's pipe overflowed"

    @invariant()
    def the_run_ends_exactly_when_everything_read_is_delivered(self) -> None:
        settled = self.source_ended and not self.calls and not self.sink_queue
        if self.status is None:
            assert not settled, "nothing was left to do but the run did not finish"
            stuck = not self.calls and not self.sink_queue and not self.core.wants_input()
            assert not stuck or self.source_ended, "the flow stalled with the source still open"
        else:
            assert settled, "the run finished with work left"
            assert self.status == ("completed" if self.exhausted else "drained")
            self._check_against_oracle()

    def _check_against_oracle(self) -> None:
        fates = {x: fate(x, [k for link in self.kinds for k in link]) for x in self.read_x}
        assert sorted(self.delivered_x) == [x for x in sorted(fates) if fates[x] == "delivered"]
        assert sorted(self.dead_x) == [x for x in sorted(fates) if fates[x] == "dead"]
        assert self.bad_seen == self.bad_read
        metrics = self.core.metrics()
        assert metrics["sink"].rows_in == len(self.delivered_x)
        assert metrics["source"].dead_letters == self.bad_read and metrics["source"].rows_out == len(self.read_x)
        # Every stage, chained or not, counts the rows the stage before it let through.
        ids = [i for stage in self.plan.stages for i in stage.stage_ids]
        flow = [metrics["source"].rows_out] + [n for i in ids for n in (metrics[i].rows_in, metrics[i].rows_out)]
        assert flow[:-1:2] == flow[1::2] and flow[-1] == metrics["sink"].rows_in
        assert sum(metrics[i].dead_letters for i in ids) == len(self.dead_x)
        if self.plan.ordered:
            for key in set(self.delivered_k):
                xs = [x for x, k in zip(self.delivered_x, self.delivered_k) if k == key]
                assert xs == sorted(xs), f"key {key} lost its source order"

    def teardown(self) -> None:
        """Drive what is left to the end (sink first, then calls, then the source)."""
        if not hasattr(self, "core"):
            return
        for _ in range(10_000):
            if self.status is not None:
                break
            if self.sink_queue:
                self.commit()
            elif self.calls:
                self.complete(0)
            elif self.next_batch < len(self.batches) and self.core.wants_input():
                self.read()
            else:
                assert not self.source_ended and self.next_batch == len(self.batches), "the flow stalled"
                self.source_exhausted()
        assert self.status is not None, "the run never finished"
        self._check_against_oracle()


FlowMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=50, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_flow_core_state_machine = FlowMachine.TestCase
