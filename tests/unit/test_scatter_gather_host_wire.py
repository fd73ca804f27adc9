"""Unit tests of a shard host's answer frame (no Ray): what goes in comes out."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scatter_gather.gathering import HostReply
from engine.scatter_gather.host_wire import pack_host_reply, unpack_host_reply
from engine.scatter_gather.replies import encode_reply

pytestmark = pytest.mark.unit

NAMES = [f"shard-{index}" for index in range(6)]


def table_of(values: list[int]) -> pa.Table:
    return pa.table({"word": [f"w{v}" for v in values], "count": pa.array(values, pa.int64())})


@settings(max_examples=60, deadline=None)
@given(outcomes=st.lists(st.sampled_from(["reply", "error", "late", "combined"]),
                         min_size=len(NAMES), max_size=len(NAMES)),
       values=st.lists(st.integers(-5, 10**12), max_size=20))
def test_a_packed_answer_unpacks_to_the_same_answer(outcomes: list[str], values: list[int]) -> None:
    replies = {n: table_of(values[i:]) for i, (n, o) in enumerate(zip(NAMES, outcomes)) if o == "reply"}
    errors = {n: f"ValueError: shard {n} said no" for n, o in zip(NAMES, outcomes) if o == "error"}
    late = tuple(n for n, o in zip(NAMES, outcomes) if o == "late")
    combined_shards = tuple(n for n, o in zip(NAMES, outcomes) if o == "combined")
    combined = table_of(values) if combined_shards else None
    reply = HostReply({n: encode_reply(t) for n, t in replies.items()}, errors, late,
                      None if combined is None else encode_reply(combined), combined_shards)
    packed = pack_host_reply(reply)
    assert isinstance(packed, bytes)
    back = unpack_host_reply(packed)
    assert {n: t.to_pylist() for n, t in back.replies.items()} == {n: t.to_pylist() for n, t in replies.items()}
    assert back.errors == errors and back.late == late and back.combined_shards == combined_shards
    assert (back.combined is None) == (combined is None)
    if combined is not None:
        assert back.combined.equals(combined)


def test_an_answer_with_a_reply_that_is_not_a_table_travels_as_the_object() -> None:
    reply = HostReply({"a": 3, "b": encode_reply(table_of([1]))})
    assert pack_host_reply(reply) is reply
    back = unpack_host_reply(reply)
    assert back.replies["a"] == 3 and back.replies["b"].to_pylist() == [{"word": "w1", "count": 1}]


@pytest.mark.parametrize("value", [b"", b"SGH2xxxx", b"not a frame at all"])
def test_bytes_that_are_not_a_frame_are_refused(value: bytes) -> None:
    with pytest.raises(ValueError, match="not a shard host answer"):
        unpack_host_reply(value)


def test_a_frame_whose_header_does_not_match_its_payloads_is_refused() -> None:
    packed = pack_host_reply(HostReply({"a": encode_reply(table_of([1, 2]))}))
    with pytest.raises(ValueError, match="header accounts for"):
        unpack_host_reply(packed + b"extra")
