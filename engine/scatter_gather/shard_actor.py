"""The worker side: a Ray actor holding one shard and answering requests over it.

Any actor can be a scatter-gather worker if it has the method

    handle(request) -> reply                    # one reply (Arrow table or scalar)

and, optionally, for long-running requests that report partial results as they go,

    handle_stream(request) -> generator of replies

:class:`ShardActor` is the generic one: built from an Arrow table and a handler
``handler(shard, request)``.  It is a threaded actor (``max_concurrency`` threads), so one
stalled request does not hold up the requests queued behind it.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import pyarrow as pa
import ray
from ray.actor import ActorHandle

from engine.scatter_gather.replies import (PartialReplies, call_handler, encode_reply,
                                           stream_handler)
from engine.scatter_gather.spec import Handler, Request, ScatterGatherOptions


class ShardActor:
    """One shard and the handler that answers requests over it."""

    def __init__(self, shard: pa.Table, handler: Handler, name: str) -> None:
        self._shard = shard
        self._handler = handler
        self._name = name

    def handle(self, request: Request) -> Any:
        """Apply the handler to this shard; a generator's pieces come back together.

        Table replies are sent as Arrow IPC bytes (see ``replies.encode_reply``).
        """
        reply = call_handler(self._handler, self._shard, request)
        if isinstance(reply, PartialReplies):
            return PartialReplies(tuple(encode_reply(piece) for piece in reply.pieces))
        return encode_reply(reply)

    def handle_stream(self, request: Request) -> Iterator[Any]:
        """Apply the handler, streaming each partial reply back as soon as it exists."""
        for piece in stream_handler(self._handler, self._shard, request):
            yield encode_reply(piece)

    def describe(self) -> dict:
        """Name, row count and schema of the shard (also used as a readiness probe)."""
        return {"name": self._name, "rows": self._shard.num_rows,
                "schema": self._shard.schema.to_string()}


RemoteShardActor = ray.remote(ShardActor)


def start_shard_actors(shards: Sequence[pa.Table], handler: Handler, names: Sequence[str],
                       options: ScatterGatherOptions) -> list[ActorHandle]:
    """Start one :class:`ShardActor` per shard and return once all of them are ready.

    Shards travel through the object store by reference (one ``ray.put`` each at start-up,
    never per request).  ``options.warmup_request``, if set, is answered once by every
    actor before this returns; if it fails, the actors are stopped and the error raised.
    """
    actor_class = RemoteShardActor.options(
        num_cpus=options.num_cpus_per_shard, max_concurrency=options.max_concurrency)
    handler_ref = ray.put(handler)
    actors = [actor_class.remote(ray.put(shard), handler_ref, name)
              for shard, name in zip(shards, names)]
    try:
        ray.get([actor.describe.remote() for actor in actors])
        if options.warmup_request is not None:
            ray.get([actor.handle.remote(options.warmup_request) for actor in actors])
    except Exception:
        for actor in actors:
            ray.kill(actor)
        raise
    return actors
