"""The MapReduce scheduler against a model of its world, with events in any order.

A ``hypothesis.stateful`` machine plays the workers (joining, dying, running attempts,
holding map outputs, writing parts), the network (replies delivered late, twice, from
dead workers, or to a master that is gone) and the executor (performing the actions).
It keeps its own plain-Python model of what the scheduler must have accepted and checks
after every step:

- every task completes through exactly one accepted attempt, ``executions`` counts
  accepted completions and nothing else, and every reply for an attempt the scheduler
  is not running (late, duplicate, stale, from a dead or unknown worker) is refused;
- a Commit is emitted once per accepted completion, and no map output that a task
  completed with is ever dropped;
- no reduce starts before every map completed, and a reduce is given exactly the map
  outputs of the completed maps, held by live workers;
- work is never left idle while a ready worker has a free slot;
- after a snapshot and a takeover (the table through JSON, workers reporting what they
  run, finished and hold) the same holds;
- and once faults stop, the job finishes, with each task's counters counted once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.common.bad_records import ErrorDescription
from engine.io.splits import InputSplit
from engine.mapreduce.actions import (Action, AttemptReport, Cancel, CheckWorker, Commit, DropOutput, Fail, Finish,
                                      Launch, TakeSnapshot)
from engine.mapreduce.scheduler import Scheduler, SchedulerConfig
from engine.mapreduce.snapshot import SnapshotPolicy
from engine.mapreduce.takeover import Takeover, collect_adopted
from engine.mapreduce.task_table import TaskState, TaskTable
from tests.fakes import FakeTime

pytestmark = pytest.mark.unit

MAX_ATTEMPTS = 3
SPECULATION_AFTER = 0.5
SPECULATION_MIN_S = 1.0

Key = tuple[str, int, str]  # (task, attempt, worker)


@dataclass
class Reply:
    """A worker's answer to one attempt: "ok" (with a report), "fail" or "lost" (a reduce
    that could not fetch the map outputs ``lost``)."""

    kind: str
    key: Key
    report: AttemptReport | None = None
    lost: tuple[tuple[str, int], ...] = ()
    suspects: tuple[str, ...] = ()


@dataclass
class Expected:
    """What one event must produce."""

    commits: list[Key] = field(default_factory=list)
    cancels: set[Key] = field(default_factory=set)
    checks: set[str] = field(default_factory=set)
    fail: str | None = None


class SchedulerMachine(RuleBasedStateMachine):
    """See the module docstring."""

    @initialize(maps=st.integers(1, 4), reduces=st.integers(1, 3), slots=st.integers(1, 2),
                every=st.integers(1, 3), workers=st.integers(0, 2))
    def start(self, maps: int, reduces: int, slots: int, every: int, workers: int) -> None:
        self.time = FakeTime()
        self.maps = [f"map-{i:05d}" for i in range(maps)]
        self.reduces = [f"reduce-{r:05d}" for r in range(reduces)]
        self.config = SchedulerConfig(max_task_attempts=MAX_ATTEMPTS, speculation_after=SPECULATION_AFTER,
                                      speculation_min_s=SPECULATION_MIN_S, max_bad_record_fraction=1.0,
                                      slots_per_worker=slots)
        self.every = every
        # the world
        self.alive: set[str] = set()
        self.outputs: dict[str, set[tuple[str, int]]] = {}
        self.executing: dict[str, dict[tuple[str, int], tuple[Launch, int]]] = {}
        self.finished: dict[str, dict[tuple[str, int], AttemptReport]] = {}
        self.parts: set[int] = set()
        self.pending: list[Reply] = []
        self.delivered: list[Reply] = []
        self.stray: list[Reply] = []
        self.names = 0
        self.epoch = 0
        self.latest: str | None = None
        self.outcome: str | None = None
        self._fresh()
        for _ in range(workers):
            self.join(True)

    # ----- the model of the scheduler's state ------------------------------------------------

    def _fresh(self) -> None:
        table = TaskTable.for_job([InputSplit("table", "t", i, i + 1) for i in range(len(self.maps))],
                                  len(self.reduces))
        self.scheduler = Scheduler(table, self.config, self.time.clock, self._policy())
        self.accepted: dict[str, tuple[int, str] | None] = {t: None for t in self.tasks}
        self.executions = {t: 0 for t in self.tasks}
        self.failures = {t: 0 for t in self.tasks}
        self.speculated = {t: 0 for t in self.tasks}
        self.attempts = {t: 0 for t in self.tasks}
        self.live: dict[Key, float] = {}
        self.adopted: set[Key] = set()
        self.members: dict[str, bool] = {}

    def _policy(self) -> SnapshotPolicy:
        return SnapshotPolicy(self.every, 5.0, self.time.clock)

    @property
    def tasks(self) -> list[str]:
        return self.maps + self.reduces

    def _idle(self, task: str) -> bool:
        return self.accepted[task] is None and not any(k[0] == task for k in self.live)

    def _phase(self) -> list[str]:
        return self.maps if any(self.accepted[m] is None for m in self.maps) else self.reduces

    def _load(self, worker: str) -> int:
        return sum(1 for k in self.live if k[2] == worker)

    def _all_reduces_done(self) -> bool:
        return all(self.accepted[r] is not None for r in self.reduces)

    def _end_attempt(self, key: Key) -> None:
        self.live.pop(key, None)
        self.adopted.discard(key)

    def _accept(self, key: Key, expected: Expected) -> None:
        task, attempt, worker = key
        self.accepted[task] = (attempt, worker)
        self.executions[task] += 1
        expected.commits.append(key)
        for other in [k for k in self.live if k[0] == task and k != key]:
            expected.cancels.add(other)
            self._end_attempt(other)
        self._end_attempt(key)

    def _predict_reply(self, reply: Reply) -> Expected:
        expected = Expected()
        if reply.key not in self.live:  # late, duplicate, stale, dead worker, unknown attempt
            event(f"refused {reply.kind} reply")
            return expected
        event(f"accepted {reply.kind} reply")
        task = reply.key[0]
        if reply.kind == "ok":
            self._accept(reply.key, expected)
        elif reply.kind == "fail":
            self._end_attempt(reply.key)
            self.failures[task] += 1
            if self.failures[task] >= MAX_ATTEMPTS:
                expected.fail = task
        else:
            self._end_attempt(reply.key)
            for map_id, map_attempt in reply.lost:
                if self.accepted[map_id] is not None and self.accepted[map_id][0] == map_attempt:
                    self.accepted[map_id] = None
            expected.checks = {w for w in reply.suspects if w in self.members}
        return expected

    def _feed(self, reply: Reply) -> None:
        expected = self._predict_reply(reply)
        task, attempt, worker = reply.key
        if reply.kind == "ok":
            actions = self.scheduler.succeeded(reply.report)
        elif reply.kind == "fail":
            actions = self.scheduler.failed(task, attempt, worker, ErrorDescription("ValueError", "boom\nsecond line"))
        else:
            actions = self.scheduler.map_output_lost(task, attempt, worker, reply.lost, reply.suspects)
        self._apply(actions, expected)

    # ----- performing the scheduler's actions (as an executor would) ---------------------------

    def _apply(self, actions: list[Action], expected: Expected) -> None:
        commits: list[Key] = []
        cancels: set[Key] = set()
        for action in actions:
            assert self.outcome is None, f"{action} after the job ended"
            if isinstance(action, Launch):
                self._launched(action)
            elif isinstance(action, Commit):
                report = action.report
                commits.append((report.task_id, report.attempt, report.worker))
            elif isinstance(action, Cancel):
                cancels.add((action.task_id, action.attempt, action.worker))
            elif isinstance(action, DropOutput):
                assert action.worker in self.members, f"drop sent to {action.worker}, not a worker of the job"
                for map_id, attempt in action.keys:
                    assert self.accepted[map_id] != (attempt, action.worker), f"dropped the output {map_id} uses"
                    self.outputs.get(action.worker, set()).discard((map_id, attempt))
            elif isinstance(action, CheckWorker):
                assert action.worker in expected.checks
            elif isinstance(action, TakeSnapshot):
                self.latest = json.dumps(action.state)
            elif isinstance(action, Finish):
                assert all(self.accepted[t] is not None for t in self.tasks)
                assert action.counters == {"records": len(self.tasks), **{f"done {t}": 1 for t in self.tasks}}
                self.outcome = "finished"
            elif isinstance(action, Fail):
                message = str(action.error)
                assert expected.fail is not None and expected.fail in message and "\n" not in message, message
                self.outcome = "failed"
        assert commits == expected.commits
        assert cancels == expected.cancels
        assert (self.outcome == "failed") == (expected.fail is not None)
        if self.outcome is None:
            assert not all(self.accepted[t] is not None for t in self.tasks), "every task done, no Finish"

    def _launched(self, launch: Launch) -> None:
        task, worker, now = launch.task_id, launch.worker, self.time.now
        assert self.accepted[task] is None, f"launched completed task {task}"
        assert self.members.get(worker) is True, f"launched on {worker}, which is not a ready worker"
        assert self._load(worker) < self.config.slots_per_worker
        assert launch.attempt == self.attempts[task] + 1
        self.attempts[task] = launch.attempt
        phase = self._phase()
        assert task in phase, f"{task} launched outside the current phase"
        if launch.kind == "reduce":
            expected = {}
            for map_id in self.maps:
                attempt, holder = self.accepted[map_id]
                assert holder in self.alive and (map_id, attempt) in self.outputs[holder]
                expected.setdefault(holder, []).append((map_id, attempt))
            assert {w: sorted(keys) for w, keys in launch.sources.items()} == expected
        running = [k for k in self.live if k[0] == task]
        if launch.speculative:
            assert len(running) == 1 and running[0][2] != worker and self.speculated[task] == 0
            assert sum(self.accepted[t] is not None for t in phase) / len(phase) >= SPECULATION_AFTER
            assert now - self.live[running[0]] > SPECULATION_MIN_S
            assert not any(self._idle(t) for t in phase), "a backup attempt while a task waits"
            self.speculated[task] += 1
            event("speculative launch")
        else:
            assert not running, f"second normal attempt of {task}"
        self.live[(task, launch.attempt, worker)] = now
        self.executing[worker][(task, launch.attempt)] = (launch, self.epoch)

    # ----- workers ---------------------------------------------------------------------------

    @precondition(lambda self: self.outcome is None)
    @rule(ready=st.booleans())
    def join(self, ready: bool) -> None:
        self.names += 1
        name = f"w{self.names}"
        self.alive.add(name)
        self.outputs[name], self.executing[name], self.finished[name] = set(), {}, {}
        self.members[name] = ready
        self._apply(self.scheduler.worker_joined(name, ready), Expected())

    @precondition(lambda self: self.outcome is None and not all(self.members.values()))
    @rule(data=st.data())
    def make_ready(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(w for w, ready in self.members.items() if not ready)))
        self.members[name] = True
        self._apply(self.scheduler.worker_ready(name), Expected())

    @precondition(lambda self: self.outcome is None and self.alive)
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.alive)))
        self.alive.discard(name)
        self.outputs[name], self.executing[name], self.finished[name] = set(), {}, {}
        if name in self.members:
            del self.members[name]
            for key in [k for k in self.live if k[2] == name]:
                self._end_attempt(key)
            if not self._all_reduces_done():
                for map_id in self.maps:
                    if self.accepted[map_id] is not None and self.accepted[map_id][1] == name:
                        self.accepted[map_id] = None
        self._apply(self.scheduler.worker_lost(name), Expected())

    @precondition(lambda self: self.outcome is None and self.alive != set(self.outputs))
    @rule(data=st.data())
    def dead_worker_rejoins(self, data: st.DataObject) -> None:
        """A lost worker's name comes back (a stale lease): it is refused."""
        name = data.draw(st.sampled_from(sorted(set(self.outputs) - self.alive)))
        if name in self.scheduler.lost:
            assert self.scheduler.worker_joined(name) == []

    def _busy(self) -> list[tuple[str, tuple[str, int]]]:
        return sorted((w, key) for w in self.alive for key in self.executing[w])

    def _send(self, reply: Reply, epoch: int) -> None:
        (self.pending if epoch == self.epoch else self.stray).append(reply)

    @precondition(lambda self: self.outcome is None and self._busy())
    @rule(data=st.data(), elapsed=st.floats(0.0, 3.0))
    def finish_attempt(self, data: st.DataObject, elapsed: float) -> None:
        worker, key = data.draw(st.sampled_from(self._busy()))
        self._finish(worker, key, elapsed)

    def _finish(self, worker: str, key: tuple[str, int], elapsed: float = 0.5) -> None:
        launch, epoch = self.executing[worker].pop(key)
        full = (key[0], key[1], worker)
        counters = {"records": 1, f"done {key[0]}": 1}
        if launch.kind == "map":
            self.outputs[worker].add(key)
            report = AttemptReport(key[0], key[1], worker, "map", elapsed, counters)
        else:
            missing = [(src, k) for src, keys in launch.sources.items() for k in keys
                       if src not in self.alive or k not in self.outputs[src]]
            if missing:
                self._send(Reply("lost", full, lost=tuple(k for _, k in missing),
                                 suspects=tuple(sorted({s for s, _ in missing}))), epoch)
                return
            self.parts.add(launch.partition)
            report = AttemptReport(key[0], key[1], worker, "reduce", elapsed, counters, path=f"part-{launch.partition}")
        self.finished[worker][key] = report
        self._send(Reply("ok", full, report), epoch)

    @precondition(lambda self: self.outcome is None and self._busy())
    @rule(data=st.data())
    def fail_attempt(self, data: st.DataObject) -> None:
        worker, key = data.draw(st.sampled_from(self._busy()))
        _, epoch = self.executing[worker].pop(key)
        self._send(Reply("fail", (key[0], key[1], worker)), epoch)

    @precondition(lambda self: self.outcome is None
                  and any(self.executing[w][k][0].kind == "reduce" for w, k in self._busy()))
    @rule(data=st.data())
    def fetch_fails(self, data: st.DataObject) -> None:
        """A reduce's fetch fails although the outputs may be there (a flaky network)."""
        worker, key = data.draw(st.sampled_from([(w, k) for w, k in self._busy()
                                                 if self.executing[w][k][0].kind == "reduce"]))
        launch, epoch = self.executing[worker].pop(key)
        sources = sorted((src, k) for src, keys in launch.sources.items() for k in keys)
        lost = data.draw(st.lists(st.sampled_from(sources), min_size=1, unique=True))
        self._send(Reply("lost", (key[0], key[1], worker), lost=tuple(k for _, k in lost),
                         suspects=tuple(sorted({s for s, _ in lost}))), epoch)

    # ----- the network ---------------------------------------------------------------------------

    @precondition(lambda self: self.outcome is None and self.pending)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        reply = self.pending.pop(data.draw(st.integers(0, len(self.pending) - 1)))
        self.delivered.append(reply)
        self._feed(reply)

    @precondition(lambda self: self.outcome is None and self.delivered)
    @rule(data=st.data())
    def deliver_again(self, data: st.DataObject) -> None:
        self._feed(data.draw(st.sampled_from(self.delivered)))

    @precondition(lambda self: self.outcome is None and self.stray)
    @rule(data=st.data())
    def deliver_to_the_wrong_master(self, data: st.DataObject) -> None:
        reply = self.stray.pop(data.draw(st.integers(0, len(self.stray) - 1)))
        self.delivered.append(reply)
        self._feed(reply)

    @precondition(lambda self: self.outcome is None and self.members)
    @rule(data=st.data(), attempt=st.integers(0, 9))
    def reply_for_an_unknown_attempt(self, data: st.DataObject, attempt: int) -> None:
        worker = data.draw(st.sampled_from(sorted(self.members)))
        task = data.draw(st.sampled_from(self.tasks + ["map-99999"]))
        kind = "map" if task.startswith("map") else "reduce"
        self._feed(Reply("ok", (task, attempt + 100, worker), AttemptReport(task, attempt + 100, worker, kind)))

    @precondition(lambda self: self.outcome is None and self.live and len(self.members) > 1)
    @rule(data=st.data(), kind=st.sampled_from(["ok", "fail"]))
    def reply_from_another_worker(self, data: st.DataObject, kind: str) -> None:
        """A reply naming a running attempt, but from a worker that does not run it."""
        task, attempt, worker = data.draw(st.sampled_from(sorted(self.live)))
        other = data.draw(st.sampled_from(sorted(w for w in self.members if w != worker)))
        task_kind = "map" if task.startswith("map") else "reduce"
        self._feed(Reply(kind, (task, attempt, other), AttemptReport(task, attempt, other, task_kind)))

    # ----- time, snapshots, takeover -------------------------------------------------------------

    @precondition(lambda self: self.outcome is None)
    @rule(seconds=st.floats(0.1, 3.0))
    def time_passes(self, seconds: float) -> None:
        self.time.sleep(seconds)
        self._apply(self.scheduler.tick(), Expected())

    @precondition(lambda self: self.outcome is None and self.adopted)
    @rule(data=st.data())
    def poll_adopted(self, data: st.DataObject) -> None:
        self._poll(data.draw(st.sampled_from(sorted({k[2] for k in self.adopted}))))

    def _poll(self, worker: str) -> None:
        """Ask a worker about the attempts adopted from an earlier master."""
        expected = Expected()
        for key in sorted(k for k in self.adopted if k[2] == worker):
            if key not in self.live:
                continue
            if key[:2] in self.finished[worker]:
                self._accept(key, expected)
            elif key[:2] not in self.executing[worker]:
                self._end_attempt(key)
                self.failures[key[0]] += 1
                if self.failures[key[0]] >= MAX_ATTEMPTS:
                    expected.fail = key[0]
                    break
        actions = collect_adopted(self.scheduler, worker, sorted(self.executing[worker]),
                                  list(self.finished[worker].values()))
        self._apply(actions, expected)

    @precondition(lambda self: self.outcome is None)
    @rule()
    def snapshot(self) -> None:
        self.latest = json.dumps(self.scheduler.snapshot_state())

    @precondition(lambda self: self.outcome is None)
    @rule()
    def take_over(self) -> None:
        """The master dies; a new one starts from the newest snapshot and the workers' reports."""
        self.epoch += 1
        self.stray += self.pending
        self.pending = []
        if self.latest is None:
            self._fresh()
            return
        state = json.loads(self.latest)
        self._fresh()
        self.scheduler = None
        for item in state["tasks"]:
            task = item["task_id"]
            if item["state"] == "completed":
                self.accepted[task] = (item["completed_attempt"], item["location"])
            self.executions[task], self.failures[task] = item["executions"], item["failures"]
            self.speculated[task], self.attempts[task] = item["speculative_attempts"], item["attempt"]
        takeover = Takeover(state, self.config, self.time.clock, self._policy())
        expected = Expected()
        reported = set()
        for name in state["workers"]:
            if name not in self.alive:
                takeover.worker_unreachable(name)
                continue
            reported.add(name)
            self.members[name] = True
            held = self.outputs[name]
            for map_id in self.maps:
                done = self.accepted[map_id]
                if done and done[1] == name and (map_id, done[0]) not in held and not self._all_reduces_done():
                    self.accepted[map_id] = None
            reports = list(self.finished[name].values())
            for report in reports:
                key = (report.task_id, report.attempt, name)
                if (self.accepted[key[0]] is not None or any(k[:2] == key[:2] for k in self.live)
                        or (report.kind == "map" and key[:2] not in held)):
                    continue
                self.attempts[key[0]] = max(self.attempts[key[0]], key[1])
                self.live[key] = self.time.now
                self._accept(key, expected)
                event("takeover adopted a finished attempt")
            running = sorted(self.executing[name])
            for task, attempt in running:
                if self.accepted[task] is not None or any(k[:2] == (task, attempt) for k in self.live):
                    continue
                self.attempts[task] = max(self.attempts[task], attempt)
                self.live[(task, attempt, name)] = self.time.now
                self.adopted.add((task, attempt, name))
                event("takeover adopted a running attempt")
            takeover.worker_reported(name, running, reports, sorted(held))
        if not self._all_reduces_done():
            for map_id in self.maps:
                if self.accepted[map_id] is not None and self.accepted[map_id][1] not in reported:
                    self.accepted[map_id] = None
        self.scheduler, actions = takeover.finish()
        self._apply(actions, expected)

    # ----- after the end ---------------------------------------------------------------------------

    @precondition(lambda self: self.outcome is not None)
    @rule(data=st.data())
    def events_after_the_end_are_refused(self, data: st.DataObject) -> None:
        worker = f"w{data.draw(st.integers(0, self.names + 1))}"
        task = data.draw(st.sampled_from(self.tasks))
        assert self.scheduler.worker_joined(f"late-{worker}") == []
        assert self.scheduler.worker_lost(worker) == []
        assert self.scheduler.succeeded(AttemptReport(task, self.attempts[task], worker, "map")) == []
        assert self.scheduler.failed(task, self.attempts[task], worker, ErrorDescription("E", "x")) == []
        assert self.scheduler.tick() == []

    # ----- invariants ------------------------------------------------------------------------------

    @invariant()
    def scheduler_agrees_with_the_model(self) -> None:
        if self.outcome is not None:
            return
        table = self.scheduler.table
        for task_id in self.tasks:
            task, done = table.tasks[task_id], self.accepted[task_id]
            assert (task.state is TaskState.COMPLETED) == (done is not None), task_id
            if done is not None:
                assert task.completed_attempt == done[0] and not task.running
                if task.kind == "map":
                    assert task.location == done[1]
            assert task.executions == self.executions[task_id], task_id
            assert task.failures == self.failures[task_id], task_id
            assert task.speculative_attempts == self.speculated[task_id], task_id
            assert {(task_id, a, w) for a, w in task.running.items()} == {k for k in self.live if k[0] == task_id}
        assert self.scheduler.workers == self.members
        assert self.scheduler.adopted == {k[:2] for k in self.adopted}

    @invariant()
    def completed_outputs_exist(self) -> None:
        if self.outcome is not None:
            return
        if not self._all_reduces_done():
            for map_id in self.maps:
                if self.accepted[map_id] is not None:
                    attempt, holder = self.accepted[map_id]
                    assert holder in self.alive and (map_id, attempt) in self.outputs[holder], map_id
        for index, reduce_id in enumerate(self.reduces):
            if self.accepted[reduce_id] is not None:
                assert index in self.parts

    @invariant()
    def no_ready_worker_idles_while_work_waits(self) -> None:
        if self.outcome is not None:
            return
        waiting = [t for t in self._phase() if self._idle(t)]
        free = [w for w, ready in self.members.items() if ready and self._load(w) < self.config.slots_per_worker]
        assert not (waiting and free), (waiting, free)

    def teardown(self) -> None:
        """Once faults stop and workers keep answering, the job finishes."""
        if getattr(self, "scheduler", None) is None or self.outcome is not None:
            event(f"job {self.outcome} before the faults stopped")
            return
        for _ in range(400):
            if self.outcome is not None:
                break
            self.time.sleep(0.5)
            # newest attempts first: the oldest one lingers as a straggler worth a backup
            mine = sorted(((self.live[(k[0], k[1], w)], w, k) for w, k in self._busy() if (k[0], k[1], w) in self.live),
                          reverse=True)
            if self.pending:
                self.deliver_first()
            elif mine:
                self._finish(mine[0][1], mine[0][2])
            elif self.adopted:
                self._poll(sorted(self.adopted)[0][2])
            elif not any(self.members.values()):
                self.join(True)
            else:
                self.time_passes(1.0)
            self.scheduler_agrees_with_the_model()
            self.no_ready_worker_idles_while_work_waits()
        # A task that had failed often enough before may fail the job on a failure found
        # now (an adopted attempt that vanished); _apply checked that failure was due.
        event(f"job {self.outcome}")
        assert self.outcome in ("finished", "failed")
        if self.outcome == "finished":
            assert self.parts == set(range(len(self.reduces)))

    def deliver_first(self) -> None:
        reply = self.pending.pop(0)
        self.delivered.append(reply)
        self._feed(reply)


SchedulerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None,
                                              suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.filter_too_much])
test_scheduler_in_any_order_of_events = SchedulerMachine.TestCase
