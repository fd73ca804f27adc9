"""What a handler returns, normalised: one reply, or several partial replies.

A handler returns a reply (an Arrow table or a scalar) or a generator of partial
replies.  For a one-shot ``gather`` the generator is drained on the worker and travels
back as one :class:`PartialReplies`; the executor flattens it so the aggregator always
sees a flat list of replies.  Long-running requests stream the pieces one by one instead.

Small table replies cross process boundaries as Arrow IPC stream bytes
(:class:`IpcReply`): a small table round-trips through IPC about 4x faster than through
pickle, which is most of a fast request's cost.  Large ones (``LARGE_REPLY_BYTES`` and
up) travel as tables, which Ray keeps in its object store and the dispatcher reads
without copying their buffers.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import pyarrow as pa

from engine.common.wire import decode_table, encode_table
from engine.scatter_gather.spec import Handler, Request


@dataclass(frozen=True)
class PartialReplies:
    """Several replies from one worker, to be aggregated as if sent one by one."""

    pieces: tuple


@dataclass(frozen=True)
class IpcReply:
    """A table reply encoded as an Arrow IPC stream (decoded by :func:`decode_reply`)."""

    payload: bytes


LARGE_REPLY_BYTES = 256 * 1024


def encode_reply(reply: Any) -> Any:
    """Small tables (and record batches) become :class:`IpcReply` (also inside
    :class:`PartialReplies`); anything else, large tables included, is unchanged."""
    if isinstance(reply, PartialReplies):
        return PartialReplies(tuple(encode_reply(piece) for piece in reply.pieces))
    if isinstance(reply, pa.RecordBatch):
        reply = pa.Table.from_batches([reply])
    if not isinstance(reply, pa.Table) or reply.nbytes >= LARGE_REPLY_BYTES:
        return reply
    return IpcReply(encode_table(reply).to_pybytes())


def decode_reply(reply: Any) -> Any:
    """Undo :func:`encode_reply` (also inside :class:`PartialReplies`)."""
    if isinstance(reply, IpcReply):
        return decode_table(reply.payload)
    if isinstance(reply, PartialReplies):
        return PartialReplies(tuple(decode_reply(piece) for piece in reply.pieces))
    return reply


def call_handler(handler: Handler, shard: pa.Table, request: Request) -> Any:
    """Run ``handler`` once; a generator's pieces come back as one :class:`PartialReplies`."""
    reply = handler(shard, request)
    if inspect.isgenerator(reply):
        return PartialReplies(tuple(reply))
    return reply


def stream_handler(handler: Handler, shard: pa.Table, request: Request) -> Iterator[Any]:
    """Run ``handler`` once, yielding each partial reply as soon as it is produced."""
    reply = handler(shard, request)
    if inspect.isgenerator(reply):
        yield from reply
    else:
        yield reply


def flatten_replies(replies: Iterable[Any]) -> list:
    """Expand :class:`PartialReplies` so the aggregator sees one flat list of replies."""
    flat: list = []
    for reply in replies:
        if isinstance(reply, PartialReplies):
            flat.extend(reply.pieces)
        else:
            flat.append(reply)
    return flat
