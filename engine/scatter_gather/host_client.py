"""The dispatcher's view of one shard host: how to call it and read its reply.

A host is either one of the engine's ``ShardHost`` actors (several shards, one
``answer(request, budget_s)`` call for all of them) or an actor you supplied to
``RayScatterGather.from_actors`` (one shard, the documented ``handle(request)`` and
optional ``handle_stream(request)``).  Either way its reply becomes a
:class:`HostReply` keyed by shard, so the rest of the executor never cares which.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.actor import ActorHandle

from engine.scatter_gather.gathering import Gathering, HostReply
from engine.scatter_gather.host_runtime import DONE, ERROR, PIECE
from engine.scatter_gather.host_wire import unpack_host_reply
from engine.scatter_gather.local_channel import (OUTCOME_ERROR, OUTCOME_LATE, OUTCOME_REPLY, ChannelCall, ChannelClient,
                                                 remove_channel_files, wait_calls)
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
    channel: ChannelClient | None = field(default=None, compare=False)

    def call(self, request: Request, budget_s: float | None) -> ray.ObjectRef:
        """Send ``request``; the host answers within ``budget_s`` (supplied actors: whenever)."""
        if self.owned:
            return self.actor.answer.remote(request, budget_s)
        return self.actor.handle.remote(request)

    def send(self, body: bytes | None) -> ChannelCall | None:
        """Send an ``encode_request`` body over the host's same-node channel; ``None``
        when there is no body or no usable channel (then use :meth:`call`)."""
        if body is None or self.channel is None or not self.channel.usable:
            return None
        return self.channel.send(body)

    def close_channel(self) -> None:
        """Stop using the channel and remove its socket files (the host is gone)."""
        if self.channel is not None:
            self.channel.close()
            remove_channel_files(self.channel.address.path)

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


def with_channel(host: HostClient, enabled: bool) -> HostClient:
    """``host`` with a same-node channel (``local_channel``) when ``enabled``, the host is
    one of the engine's and it runs on the caller's node; otherwise ``host`` itself."""
    if not enabled or not host.owned:
        return host
    try:
        address = ray.get(host.actor.open_channel.remote(), timeout=30)
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # no channel is not an error: the Ray calls still work
        return host
    if address is None or address.node_id != here:
        return host
    client = ChannelClient(address)
    if not client.open():
        return host
    return replace(host, channel=client)


def take_channel_replies(sent: list[tuple[HostClient, ChannelCall]], until: float,
                         gathering: Gathering) -> list[HostClient]:
    """Record into ``gathering`` every channel reply that arrives before ``until``; returns
    the hosts to ask again through Ray (their answer was not one frame, or the connection
    broke: Ray then tells a dead host from a broken channel).  Late hosts are left out."""
    again = []
    outcomes = wait_calls([call for _, call in sent], until, time.monotonic)
    for (host, _), (kind, value) in zip(sent, outcomes):
        if kind == OUTCOME_REPLY:
            try:
                gathering.host_replied(unpack_host_reply(value))  # type: ignore[arg-type]
            except ValueError as error:
                gathering.host_failed(host.shards, f"ValueError: {error}")
        elif kind == OUTCOME_ERROR:
            gathering.host_failed(host.shards, str(value))
        elif kind != OUTCOME_LATE:
            again.append(host)
    return again
