"""Unit tests of the built-in aggregators and the spec's validation (no Ray)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scatter_gather import (ScatterGather, ScatterGatherOptions, concat_replies,
                                   sum_replies, top_k_replies)
from engine.scatter_gather.replies import PartialReplies, flatten_replies

pytestmark = pytest.mark.unit


def _identity(shard: pa.Table, request: dict) -> pa.Table:
    return shard


def test_concat_keeps_worker_order_and_unifies_schemas() -> None:
    first = pa.table({"a": [1, 2]})
    second = pa.record_batch({"a": [3], "b": ["x"]})
    out = concat_replies()([first, second])
    assert out.column("a").to_pylist() == [1, 2, 3]
    assert out.column("b").to_pylist() == [None, None, "x"]


def test_concat_rejects_a_non_table_reply_by_position() -> None:
    with pytest.raises(TypeError, match="reply 1 is a int"):
        concat_replies()([pa.table({"a": [1]}), 5])


def test_sum_of_scalars_and_of_a_column() -> None:
    assert sum_replies()([1, 2, 3.5]) == 6.5
    assert sum_replies()([pa.scalar(2), pa.scalar(5)]) == 7
    tables = [pa.table({"n": [1, 2]}), pa.table({"n": pa.array([], pa.int64())}),
              pa.table({"n": [10]})]
    assert sum_replies("n")(tables) == 13


def test_top_k_rejects_bad_k_and_missing_column() -> None:
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k_replies("count", 0)
    with pytest.raises(KeyError, match="'score'"):
        top_k_replies("score", 2)([pa.table({"count": [1]})])


rows = st.lists(st.tuples(st.integers(0, 20), st.text("abc", min_size=1, max_size=4)),
                max_size=30, unique_by=lambda row: row[1])


@settings(max_examples=25, deadline=None)
@given(rows=rows, cuts=st.lists(st.integers(0, 30), max_size=4), k=st.integers(1, 8),
       descending=st.booleans())
def test_top_k_merge_equals_sorting_everything(rows: list, cuts: list, k: int,
                                               descending: bool) -> None:
    table = pa.table({"count": pa.array([r[0] for r in rows], pa.int64()),
                      "word": pa.array([r[1] for r in rows], pa.string())})
    bounds = sorted({0, len(rows), *[min(c, len(rows)) for c in cuts]})
    replies = [table.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])] or [table]
    out = top_k_replies("count", k, descending=descending, tie_break="word")(replies)
    expected = sorted(rows, key=lambda r: (-r[0] if descending else r[0], r[1]))[:k]
    assert list(zip(out["count"].to_pylist(), out["word"].to_pylist())) == expected


def test_partial_replies_are_flattened_in_order() -> None:
    assert flatten_replies([1, PartialReplies((2, 3)), 4]) == [1, 2, 3, 4]


def test_spec_validation_names_the_bad_thing() -> None:
    table = pa.table({"a": [1]})
    with pytest.raises(ValueError, match="non-empty"):
        ScatterGather([], _identity, concat_replies())
    with pytest.raises(TypeError, match="single table"):
        ScatterGather(table, _identity, concat_replies())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shard 1 is a list"):
        ScatterGather([table, [1]], _identity, concat_replies())  # type: ignore[list-item]
    with pytest.raises(TypeError, match="handler must be callable"):
        ScatterGather([table], "nope", concat_replies())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_replies=3 exceeds the number of workers"):
        ScatterGather([table, table], _identity, concat_replies(),
                      ScatterGatherOptions(min_replies=3))
    with pytest.raises(ValueError, match="deadline_s must be > 0"):
        ScatterGatherOptions(deadline_s=0)
    spec = ScatterGather([table, pa.record_batch({"a": [2]})], _identity, concat_replies())
    assert spec.worker_names == ["shard-0", "shard-1"]
    assert isinstance(spec.shards[1], pa.Table)


def test_table_replies_round_trip_through_arrow_ipc() -> None:
    from engine.scatter_gather.replies import IpcReply, decode_reply, encode_reply

    table = pa.table({"word": ["a", None], "count": [1, 2]})
    encoded = encode_reply(table)
    assert isinstance(encoded, IpcReply)
    assert decode_reply(encoded).equals(table)
    assert decode_reply(encode_reply(pa.record_batch(table.to_batches()[0]))).equals(table)
    assert encode_reply(5) == 5 and decode_reply(5) == 5
    pieces = decode_reply(PartialReplies((encode_reply(table), 3)))
    assert pieces.pieces[0].equals(table) and pieces.pieces[1] == 3
