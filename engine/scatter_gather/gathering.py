"""Per-request bookkeeping, shard by shard: which shards answered, failed or are missing.

A :class:`Gathering` is fed events in any order — a shard's reply pieces, its completion,
its failure, a whole host's reply or failure — and turns what arrived into a
:class:`GatherResult` that names the missing *shards* (never hosts).  The first outcome of
a shard wins (a late duplicate changes nothing), and after :meth:`Gathering.close` (the
deadline passed) nothing changes at all.  No Ray here: both executors use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from engine.scatter_gather.replies import flatten_replies
from engine.scatter_gather.spec import Aggregator, GatherResult


@dataclass(frozen=True)
class HostReply:
    """One host's answer for its shards: replies (shard -> reply), errors (shard -> one
    line) and the shards still running when the host had to answer (``late``).  A host
    whose aggregator ``merges_in_groups`` sends the replies of ``combined_shards`` merged
    into the one reply ``combined`` instead."""

    replies: Mapping[str, Any] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)
    late: tuple[str, ...] = ()
    combined: Any = None
    combined_shards: tuple[str, ...] = ()


class Gathering:
    """The replies of one request as they arrive, per shard."""

    def __init__(self, names: Sequence[str]) -> None:
        if len(set(names)) != len(names):
            raise ValueError(f"shard names must be distinct, got {list(names)!r}")
        self.names = list(names)
        self._known = set(names)
        self._pieces: dict[str, list[Any]] = {}
        self._answered: set[str] = set()
        self._errors: dict[str, str] = {}
        self._combined: set[str] = set()  # shards whose piece is a host's merged reply
        self.closed = False

    def _open(self, shard: str) -> bool:
        if shard not in self._known:
            raise KeyError(f"unknown shard {shard!r}")
        return not self.closed and shard not in self._answered and shard not in self._errors

    def piece(self, shard: str, reply: Any) -> None:
        """One (partial) reply of ``shard``; ignored once the shard has an outcome."""
        if self._open(shard):
            self._pieces.setdefault(shard, []).append(reply)

    def finished(self, shard: str) -> None:
        """``shard`` sent its last piece: it has answered."""
        if self._open(shard):
            self._answered.add(shard)

    def failed(self, shard: str, error: str) -> None:
        """``shard`` failed: it is missing with ``error`` and contributes nothing."""
        if self._open(shard):
            self._errors[shard] = error
            self._pieces.pop(shard, None)

    def host_replied(self, reply: HostReply) -> None:
        """A host's one-call answer: each replied shard answered, each error failed; its
        ``late`` shards stay missing (their replies would come after the answer)."""
        for shard, value in reply.replies.items():
            self.piece(shard, value)
            self.finished(shard)
        if reply.combined_shards and self._open(reply.combined_shards[0]):
            self.piece(reply.combined_shards[0], reply.combined)  # stands for all of them
            self._combined.add(reply.combined_shards[0])
            for shard in reply.combined_shards:
                self.finished(shard)
        for shard, error in reply.errors.items():
            self.failed(shard, error)

    def host_failed(self, shards: Sequence[str], error: str) -> None:
        """A host's call failed as a whole (it died, or is being replaced): every one of
        its ``shards`` without an outcome yet fails with ``error``."""
        for shard in shards:
            self.failed(shard, error)

    def close(self) -> None:
        """No more events count (the deadline passed, or every shard has an outcome)."""
        self.closed = True

    @property
    def answered(self) -> list[str]:
        """Shards whose reply is complete, in shard order."""
        return [name for name in self.names if name in self._answered]

    @property
    def missing(self) -> list[str]:
        """Shards whose reply is not (yet) complete, in shard order."""
        return [name for name in self.names if name not in self._answered]

    @property
    def errors(self) -> dict[str, str]:
        """Failed shards and their error, in shard order."""
        return {name: self._errors[name] for name in self.names if name in self._errors}

    def settled(self) -> bool:
        """Every shard has an outcome (answered or failed)."""
        return len(self._answered) + len(self._errors) == len(self.names)

    def replies(self) -> list[Any]:
        """Every piece that counts, in shard order (partial replies flattened)."""
        return flatten_replies(r for name in self.names for r in self._pieces.get(name, ()))

    def result(self, aggregator: Aggregator, started: float, request_id: str | None,
               done: bool = True) -> GatherResult:
        """Aggregate the pieces that arrived (``value`` is ``None`` when none did)."""
        replies = self.replies()
        missing = self.missing
        if len(replies) == 1 and len(self._pieces) == 1 and set(self._pieces) <= self._combined:
            # one host's reply, already merged by this aggregator: merging it again is a no-op
            value = replies[0]
        else:
            value = aggregator(replies) if replies else None
        return GatherResult(
            value=value, partial=bool(missing),
            answered=self.answered, missing=missing, elapsed_s=time.monotonic() - started,
            request_id=request_id, errors=self.errors, done=done)
