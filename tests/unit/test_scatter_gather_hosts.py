"""Unit tests of shard placement, the host table and per-request bookkeeping (no Ray)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.scatter_gather.gathering import Gathering, HostReply
from engine.scatter_gather.placement import DEAD, READY, STARTING, HostTable, assign_shards, host_budget, host_count

pytestmark = pytest.mark.unit


@given(requested=st.none() | st.integers(1, 40), nodes=st.integers(1, 64), shards=st.integers(1, 40))
def test_host_count_follows_nodes_and_never_exceeds_shards(requested: int | None, nodes: int, shards: int) -> None:
    expected = min(nodes if requested is None else requested, shards)
    assert host_count(requested, nodes, shards) == expected


def test_host_count_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="hosts must be >= 1, got 0"):
        host_count(0, 2, 8)


@given(shards=st.integers(1, 50), data=st.data())
def test_every_shard_is_on_exactly_one_host_and_hosts_are_balanced(shards: int, data: st.DataObject) -> None:
    hosts = data.draw(st.integers(1, shards))
    names = [f"shard-{i}" for i in range(shards)]
    groups = assign_shards(names, hosts)
    assert len(groups) == hosts
    flat = [name for group in groups for name in group]
    assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))
    sizes = [len(group) for group in groups]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    for index, name in enumerate(names):  # the documented rule: shard i on host i mod hosts
        assert name in groups[index % hosts]
    for group in groups:
        assert group == sorted(group, key=names.index)


def test_assign_refuses_more_hosts_than_shards() -> None:
    with pytest.raises(ValueError, match="hosts must be between 1 and 2 .*got 3"):
        assign_shards(["a", "b"], 3)


@given(remaining=st.floats(-1, 10, allow_nan=False), margin=st.floats(0, 1, allow_nan=False))
def test_host_budget_leaves_a_margin_and_is_never_negative(remaining: float, margin: float) -> None:
    budget = host_budget(remaining, margin)
    left = max(0.0, remaining)
    assert 0.0 <= budget <= left
    assert budget >= left / 2 - 1e-12  # at most half the time goes to the margin
    assert left - budget >= min(left / 2, margin) - 1e-12  # at least the asked margin
    assert left - budget >= left / 10 - 1e-12


class HostTableMachine(RuleBasedStateMachine):
    """Events about host processes in any order, including stale ones, vs a plain model."""

    HOSTS = 3

    def __init__(self) -> None:
        super().__init__()
        self.table = HostTable(self.HOSTS, ready=True)
        self.model = [[READY, 0] for _ in range(self.HOSTS)]  # state, generation
        self.restarts = 0

    @rule(host=st.integers(0, HOSTS - 1), back=st.integers(0, 2))
    def failed(self, host: int, back: int) -> None:
        generation = max(0, self.model[host][1] - back)
        news = self.table.failed(host, generation)
        expected = generation == self.model[host][1] and self.model[host][0] != DEAD
        assert news == expected
        if expected:
            self.model[host][0] = DEAD

    @rule(host=st.integers(0, HOSTS - 1))
    def replace(self, host: int) -> None:
        if self.model[host][0] != DEAD:
            with pytest.raises(ValueError, match="only a dead host is replaced"):
                self.table.replace(host)
            return
        assert self.table.replace(host) == self.model[host][1] + 1
        self.model[host] = [STARTING, self.model[host][1] + 1]
        self.restarts += 1

    @rule(host=st.integers(0, HOSTS - 1), back=st.integers(0, 2))
    def ready(self, host: int, back: int) -> None:
        generation = max(0, self.model[host][1] - back)
        made_ready = self.table.ready(host, generation)
        expected = generation == self.model[host][1] and self.model[host][0] == STARTING
        assert made_ready == expected
        if expected:
            self.model[host][0] = READY

    @invariant()
    def agrees_with_the_model(self) -> None:
        for host in range(self.HOSTS):
            state = self.table.state(host)
            assert [state.state, state.generation] == self.model[host]
        assert self.table.callable_hosts() == [h for h in range(self.HOSTS) if self.model[h][0] == READY]
        assert self.table.restarts == self.restarts


TestHostTable = HostTableMachine.TestCase
TestHostTable.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)

NAMES = ["shard-0", "shard-1", "shard-2", "shard-3"]
HOSTS = [["shard-0", "shard-2"], ["shard-1", "shard-3"]]


class GatheringMachine(RuleBasedStateMachine):
    """Shard and host events in any order (duplicates, late ones, after close) vs a model:
    the first outcome of a shard wins, a failed shard contributes nothing, close freezes."""

    def __init__(self) -> None:
        super().__init__()
        self.gathering = Gathering(NAMES)
        self.outcome: dict[str, str] = {}  # shard -> "answered" | error
        self.pieces: dict[str, list[int]] = {}
        self.closed = False
        self.counter = 0

    def _open(self, shard: str) -> bool:
        return not self.closed and shard not in self.outcome

    def _value(self) -> int:
        self.counter += 1
        return self.counter

    @rule(shard=st.sampled_from(NAMES))
    def piece(self, shard: str) -> None:
        value = self._value()
        self.gathering.piece(shard, value)
        if self._open(shard):
            self.pieces.setdefault(shard, []).append(value)

    @rule(shard=st.sampled_from(NAMES))
    def finished(self, shard: str) -> None:
        self.gathering.finished(shard)
        if self._open(shard):
            self.outcome[shard] = "answered"

    @rule(shard=st.sampled_from(NAMES))
    def failed(self, shard: str) -> None:
        self.gathering.failed(shard, f"boom {shard}")
        if self._open(shard):
            self.outcome[shard] = f"boom {shard}"
            self.pieces.pop(shard, None)

    @rule(host=st.sampled_from(HOSTS), data=st.data())
    def host_replied(self, host: list[str], data: st.DataObject) -> None:
        kinds = data.draw(st.lists(st.sampled_from(["reply", "error", "late"]), min_size=len(host),
                                   max_size=len(host)))
        replies = {s: self._value() for s, k in zip(host, kinds) if k == "reply"}
        errors = {s: f"err {s}" for s, k in zip(host, kinds) if k == "error"}
        late = tuple(s for s, k in zip(host, kinds) if k == "late")
        self.gathering.host_replied(HostReply(replies, errors, late))
        for shard, value in replies.items():
            if self._open(shard):
                self.pieces.setdefault(shard, []).append(value)
                self.outcome[shard] = "answered"
        for shard, error in errors.items():
            if self._open(shard):
                self.outcome[shard] = error
                self.pieces.pop(shard, None)

    @rule(host=st.sampled_from(HOSTS))
    def host_failed(self, host: list[str]) -> None:
        self.gathering.host_failed(host, "host died")
        for shard in host:
            if self._open(shard):
                self.outcome[shard] = "host died"
                self.pieces.pop(shard, None)

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        self.gathering.close()
        self.closed = True

    @invariant()
    def agrees_with_the_model(self) -> None:
        answered = [s for s in NAMES if self.outcome.get(s) == "answered"]
        assert self.gathering.answered == answered
        assert self.gathering.missing == [s for s in NAMES if s not in answered]
        assert self.gathering.errors == {s: e for s, e in self.outcome.items() if e != "answered"}
        assert self.gathering.replies() == [v for s in NAMES for v in self.pieces.get(s, [])]
        assert self.gathering.settled() == (len(self.outcome) == len(NAMES))
        result = self.gathering.result(lambda replies: sum(replies), 0.0, "rid", done=True)
        assert result.partial == (len(answered) < len(NAMES))
        assert result.value == (sum(self.gathering.replies()) if self.gathering.replies() else None)


TestGathering = GatheringMachine.TestCase
TestGathering.settings = settings(max_examples=80, stateful_step_count=25, deadline=None)


def test_gathering_rejects_unknown_shards_and_duplicate_names() -> None:
    with pytest.raises(ValueError, match="distinct"):
        Gathering(["a", "a"])
    with pytest.raises(KeyError, match="unknown shard 'zz'"):
        Gathering(["a"]).piece("zz", 1)


@pytest.mark.parametrize(("options", "message"), [
    ({"hosts": 0}, "hosts must be None or an int >= 1, got 0"),
    ({"hosts": True}, "hosts must be None or an int >= 1, got True"),
    ({"hosts": 2.5}, "hosts must be None or an int >= 1, got 2.5"),
    ({"num_cpus_per_host": -1}, "num_cpus_per_host must be >= 0, got -1"),
    ({"reply_margin_s": -0.1}, "reply_margin_s must be >= 0, got -0.1"),
])
def test_bad_host_options_are_one_line_errors(options: dict, message: str) -> None:
    from engine.scatter_gather import ScatterGatherOptions

    with pytest.raises(ValueError, match=f"^{message}$".replace(".", r"\.")):
        ScatterGatherOptions(**options)


def test_one_hosts_merged_reply_is_the_answer_without_merging_it_again() -> None:
    calls: list[list[int]] = []

    def total(replies: list[int]) -> int:
        calls.append(list(replies))
        return sum(replies)

    one = Gathering(NAMES)
    one.host_replied(HostReply(combined=7, combined_shards=tuple(NAMES)))
    assert one.result(total, 0.0, None).value == 7 and calls == []
    two = Gathering(NAMES)
    two.host_replied(HostReply(combined=7, combined_shards=tuple(NAMES[:2])))
    two.host_replied(HostReply(combined=5, combined_shards=tuple(NAMES[2:])))
    assert two.result(total, 0.0, None).value == 12 and calls == [[7, 5]]
    raw = Gathering(NAMES)
    raw.host_replied(HostReply(replies={NAMES[0]: 3}))  # one shard's own reply is still aggregated
    assert raw.result(total, 0.0, None).value == 3 and calls[-1] == [3]
