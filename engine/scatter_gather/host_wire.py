"""A shard host's answer on the wire: one ``bytes`` frame when its replies are all tables.

Ray passes a ``bytes`` return value through untouched, while any other object goes
through its pickler (cloudpickle, with a Python hook called on every object inside):
for a host answer holding a few small Arrow IPC replies, the frame saves about 0.1 ms of
a 2 ms request on 2 cores.  The frame is ``MAGIC``, a 4-byte little-endian header
length, a JSON header (shards, errors, late shards and each payload's length) and the
IPC payloads one after another.  A host answer with a reply that is not a table (a
scalar, a large table kept in the object store, several partial replies) travels as the
:class:`HostReply` object itself.  Nothing here unpickles: the frame is JSON and Arrow
IPC only.
"""

from __future__ import annotations

import json

import pyarrow as pa

from engine.common.wire import decode_table
from engine.scatter_gather.gathering import HostReply
from engine.scatter_gather.replies import IpcReply, decode_reply

MAGIC = b"SGH1"
_HEADER_LENGTH_BYTES = 4


def pack_host_reply(reply: HostReply) -> bytes | HostReply:
    """``reply`` as one frame when every reply in it is an :class:`IpcReply` (and its
    shard names are strings); otherwise ``reply`` unchanged."""
    values = list(reply.replies.values())
    if reply.combined is not None:
        values.append(reply.combined)
    names = [*reply.replies, *reply.errors, *reply.late, *reply.combined_shards]
    if not all(isinstance(value, IpcReply) for value in values) or not all(
            isinstance(name, str) for name in names):
        return reply
    header = json.dumps({
        "replies": [[shard, len(value.payload)] for shard, value in reply.replies.items()],
        "errors": reply.errors, "late": list(reply.late),
        "combined": None if reply.combined is None else len(reply.combined.payload),
        "combined_shards": list(reply.combined_shards)}).encode()
    return b"".join([MAGIC, len(header).to_bytes(_HEADER_LENGTH_BYTES, "little"), header,
                     *(value.payload for value in values)])


def unpack_host_reply(value: bytes | HostReply) -> HostReply:
    """The :class:`HostReply` of ``value`` with its table replies decoded (zero-copy
    over the frame); a :class:`HostReply` object has its replies decoded likewise."""
    if isinstance(value, HostReply):
        return HostReply({shard: decode_reply(reply) for shard, reply in value.replies.items()},
                         value.errors, value.late, decode_reply(value.combined), value.combined_shards)
    if not isinstance(value, bytes) or not value.startswith(MAGIC):
        raise ValueError(f"not a shard host answer: {type(value).__name__} "
                         f"starting {bytes(value[:8]) if isinstance(value, bytes) else ''!r}")
    start = len(MAGIC) + _HEADER_LENGTH_BYTES
    header_end = start + int.from_bytes(value[len(MAGIC):start], "little")
    header = json.loads(value[start:header_end])
    frame, offset = pa.py_buffer(value), header_end

    def table(length: int) -> pa.Table:
        nonlocal offset
        piece = frame.slice(offset, length)
        offset += length
        return decode_table(piece)

    replies = {shard: table(length) for shard, length in header["replies"]}
    combined = None if header["combined"] is None else table(header["combined"])
    if offset != len(value):
        raise ValueError(f"shard host answer of {len(value)} bytes: its header accounts for {offset}")
    return HostReply(replies, header["errors"], tuple(header["late"]), combined,
                     tuple(header["combined_shards"]))
