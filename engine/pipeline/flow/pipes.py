"""Pieces, calls, replicas and one stage's bounded input pipe.

A stage's pipe holds, in units of one input piece each: the pieces waiting for a replica
(``ready``), the calls in flight, and the finished outputs waiting for room downstream
(``held``; one call's output counts once however many parts it was split into).  A
bundle of ``k`` pieces enters a pipe only when ``fits(depth, capacity, k)``: there is
room for all of it, or the pipe is empty (so a bundle larger than the bound cannot wait
forever).  A pipe's depth is therefore at most ``max(capacity, largest bundle)``, apart
from the documented exception of ordered runs (see ``core.py``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from engine.pipeline.autoscale import Autoscaler
from engine.pipeline.flow.plan import StagePlan
from engine.pipeline.result import StageMetrics


def fits(depth: int, capacity: int, size: int) -> bool:
    """Whether a bundle of ``size`` pieces may enter a pipe of ``depth`` and ``capacity``."""
    return depth == 0 or depth + size <= capacity


@dataclass
class Piece:
    """A batch in flight: stable name (source sequence number, then one index per key
    split), opaque payload, rows and key route (the replica slot of a keyed stage)."""

    name: tuple[int, ...]
    payload: object
    rows: int
    route: int = 0

    @property
    def seq(self) -> int:
        """The source sequence number this piece came from."""
        return self.name[0]


@dataclass
class Call:
    """One submitted filter call."""

    call_id: int
    stage: int
    replica: "Replica"
    piece: Piece


@dataclass
class Replica:
    """A replica and its calls in flight, in submission order."""

    replica_id: int
    calls: dict[int, Call] = field(default_factory=dict)

    @property
    def load(self) -> int:
        """Calls in flight on this replica."""
        return len(self.calls)


class StagePipe:
    """The live state of one link (a stage and those chained after it): its replicas, its
    input pipe and the metrics of each of its stages."""

    def __init__(self, index: int, plan: StagePlan) -> None:
        self.index = index
        self.plan = plan
        self.active: list[Replica] = []
        self.retiring: list[Replica] = []
        self.ready: deque[Piece] = deque()
        self.held: deque[list[Piece]] = deque()
        self.metrics = StageMetrics(plan.id, replicas=plan.replicas)
        self.member_metrics = [StageMetrics(member, replicas=plan.replicas) for member in plan.members]
        self.autoscaler = Autoscaler(plan.autoscale) if plan.autoscale is not None else None

    @property
    def key(self) -> str | None:
        """The routing key column of this stage (``None``: least-loaded)."""
        return self.plan.key

    def inflight(self) -> int:
        """Calls submitted and not yet completed (active and retiring replicas)."""
        return sum(r.load for r in self.active) + sum(r.load for r in self.retiring)

    def depth(self) -> int:
        """Units in the pipe: ready pieces + calls in flight + held outputs."""
        return len(self.ready) + self.inflight() + len(self.held)

    def units_of(self, seq: int) -> int:
        """Units in the pipe that belong to source sequence ``seq``."""
        calls = sum(1 for r in self.active + self.retiring for c in r.calls.values() if c.piece.seq == seq)
        return (sum(1 for p in self.ready if p.seq == seq) + calls
                + sum(1 for bundle in self.held if bundle[0].seq == seq))

    def find(self, replica_id: int) -> Replica | None:
        """The active or retiring replica with this id, if any."""
        for replica in self.active + self.retiring:
            if replica.replica_id == replica_id:
                return replica
        return None

    def split_parts(self) -> int:
        """Parts the previous stage splits its output into for this stage (1 unless keyed)."""
        return len(self.active) if self.key is not None else 1

    def dispatch(self, limit: int, new_call: Callable[[Replica, Piece], Call]) -> list[Call]:
        """Hand ready pieces to replicas with fewer than ``limit`` calls: the least-loaded
        one, or the piece's route slot on a keyed stage (pieces of a busy slot wait, in order)."""
        calls: list[Call] = []
        if self.key is None:
            while self.ready:
                replica = min(self.active, key=lambda r: r.load)
                if replica.load >= limit:
                    break
                calls.append(new_call(replica, self.ready.popleft()))
            return calls
        waiting: deque[Piece] = deque()
        for piece in self.ready:
            replica = self.active[piece.route % len(self.active)]
            if replica.load >= limit:
                waiting.append(piece)
            else:
                calls.append(new_call(replica, piece))
        self.ready = waiting
        return calls

    def idle_retiring(self) -> list[Replica]:
        """Retiring replicas with no call left (removed from the stage)."""
        idle = [r for r in self.retiring if not r.calls]
        self.retiring = [r for r in self.retiring if r.calls]
        return idle
