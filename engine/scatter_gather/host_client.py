"""The dispatcher's view of one shard host: how to call it and read its reply.

A host is either one of the engine's ``ShardHost`` actors (several shards, one
``answer(request, budget_s)`` call for all of them) or an actor you supplied to
``RayScatterGather.from_actors`` (one shard, the documented ``handle(request)`` and
optional ``handle_stream(request)``).  Either way its reply becomes a
:class:`HostReply` keyed by shard, so the rest of the executor never cares which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ray
from ray.actor import ActorHandle

from engine.scatter_gather.gathering import Gathering, HostReply
from engine.scatter_gather.host_runtime import DONE, ERROR, PIECE
from engine.scatter_gather.host_wire import unpack_host_reply
from engine.scatter_gather.replies import decode_reply
from engine.scatter_gather.spec import Request


@dataclass(frozen=True)
class HostClient:
    """Host slot ``index`` serving ``shards`` with process ``generation`` (``actor``)."""

    index: int
    shards: tuple[str, ...]
    actor: ActorHandle
    generation: int = 0
    owned: bool = True
    probe: ray.ObjectRef | None = None

    def call(self, request: Request, budget_s: float | None) -> ray.ObjectRef:
        """Send ``request``; the host answers within ``budget_s`` (supplied actors: whenever)."""
        if self.owned:
            return self.actor.answer.remote(request, budget_s)
        return self.actor.handle.remote(request)

    def decode(self, value: Any) -> HostReply:
        """The host's reply as a :class:`HostReply` with decoded (Arrow) replies."""
        if not self.owned:
            return HostReply({self.shards[0]: decode_reply(value)})
        return unpack_host_reply(value)

    def stream(self, request: Request) -> Any:
        """Start a long-running request: a streaming generator of pieces (or, for a
        supplied actor without ``handle_stream``, one reference to its whole reply)."""
        if self.owned:
            return self.actor.answer_stream.remote(request)
        if hasattr(self.actor, "handle_stream"):
            return self.actor.handle_stream.remote(request)
        return self.actor.handle.remote(request)

    def take_event(self, gathering: Gathering, value: Any) -> None:
        """Record one streamed value of this host into ``gathering``."""
        if not self.owned:
            gathering.piece(self.shards[0], decode_reply(value))
            return
        shard, kind, payload = value
        if kind == PIECE:
            gathering.piece(shard, decode_reply(payload))
        elif kind == DONE:
            gathering.finished(shard)
        elif kind == ERROR:
            gathering.failed(shard, payload)

    def stream_ended(self, gathering: Gathering) -> None:
        """The host's stream ended normally (a supplied actor's one shard has answered)."""
        if not self.owned:
            gathering.finished(self.shards[0])

    def unavailable(self) -> str:
        """Why this host's shards are missing while it is being replaced."""
        return (f"ShardHostUnavailable: the host of {', '.join(self.shards)} died and is "
                "being replaced")
