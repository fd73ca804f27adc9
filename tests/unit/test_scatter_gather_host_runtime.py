"""Unit tests of what a shard host does with a request (threads, no Ray)."""

from __future__ import annotations

import threading
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine.scatter_gather.host_runtime import DONE, ERROR, PIECE, ShardRunner
from engine.scatter_gather.replies import decode_reply

pytestmark = pytest.mark.unit

SHARDS = {f"shard-{i}": pa.table({"id": [i] * 3, "x": [10 * i, 10 * i + 1, 10 * i + 2]}) for i in range(4)}
GATES: dict[int, threading.Event] = {}


def rows_above(shard: pa.Table, request: dict) -> pa.Table:
    """Rows with x above request["above"]; the shard named in "stall" waits on its gate,
    the one named in "fail" raises."""
    me = shard["id"][0].as_py()
    if request.get("stall") == me:
        GATES[me].wait(30)
    if request.get("fail") == me:
        raise ValueError(f"shard {me} refused")
    return shard.filter(pc.greater(shard["x"], request["above"]))


def pieces(shard: pa.Table, request: dict) -> Iterator[pa.Table]:
    yield shard.slice(0, 1)
    yield shard.slice(1)


def oracle(above: int, shards: list[int]) -> dict[str, list[int]]:
    return {f"shard-{i}": [x for x in (10 * i, 10 * i + 1, 10 * i + 2) if x > above] for i in shards}


def xs(reply: object) -> list[int]:
    return decode_reply(reply)["x"].to_pylist()


def test_every_shard_answers_in_one_reply() -> None:
    runner = ShardRunner(SHARDS, rows_above, max_concurrency=2)
    reply = runner.answer({"above": 11}, None)
    assert {name: xs(value) for name, value in reply.replies.items()} == oracle(11, [0, 1, 2, 3])
    assert reply.errors == {} and reply.late == ()
    runner.close()


def test_a_stalled_shard_is_late_and_hides_no_other_shard() -> None:
    GATES[2] = threading.Event()
    runner = ShardRunner(SHARDS, rows_above, max_concurrency=4)
    try:
        reply = runner.answer({"above": -1, "stall": 2, "fail": 3}, 1.0)
        assert reply.late == ("shard-2",)
        assert reply.errors == {"shard-3": "ValueError: shard 3 refused"}
        assert {name: xs(value) for name, value in reply.replies.items()} == oracle(-1, [0, 1])
    finally:
        GATES[2].set()
        runner.close()


def test_a_shard_at_its_concurrency_limit_is_reported_busy_not_queued() -> None:
    GATES[1] = threading.Event()
    runner = ShardRunner(SHARDS, rows_above, max_concurrency=1)
    try:
        first = runner.answer({"above": -1, "stall": 1}, 0.05)
        assert "shard-1" in first.late
        second = runner.answer({"above": -1}, 5)
        assert list(second.errors) == ["shard-1"] and "ShardBusy" in second.errors["shard-1"]
        assert {name: xs(value) for name, value in second.replies.items()} == oracle(-1, [0, 2, 3])
    finally:
        GATES[1].set()
        runner.close()
    # The stalled call finished: the shard is free again.
    runner = ShardRunner(SHARDS, rows_above, max_concurrency=1)
    assert runner.answer({"above": -1}, None).errors == {}
    runner.close()


def test_stream_reports_each_shards_pieces_then_its_end() -> None:
    runner = ShardRunner({"a": SHARDS["shard-0"], "b": SHARDS["shard-1"]}, pieces, max_concurrency=2)
    events = list(runner.stream({}))
    for name, shard in (("a", SHARDS["shard-0"]), ("b", SHARDS["shard-1"])):
        mine = [(kind, payload) for who, kind, payload in events if who == name]
        assert [kind for kind, _ in mine] == [PIECE, PIECE, DONE]
        assert [x for _, payload in mine[:2] for x in xs(payload)] == shard["x"].to_pylist()
    runner.close()


def test_stream_reports_a_failing_shard_as_an_error_event() -> None:
    runner = ShardRunner(SHARDS, rows_above, max_concurrency=2)
    events = list(runner.stream({"above": 0, "fail": 1}))
    ends = {who: (kind, payload) for who, kind, payload in events if kind != PIECE}
    assert ends["shard-1"] == (ERROR, "ValueError: shard 1 refused")
    assert all(ends[f"shard-{i}"] == (DONE, None) for i in (0, 2, 3))
    runner.close()


def test_fast_shards_run_in_turn_on_one_thread() -> None:
    threads: dict[str, str] = {}

    def where(shard: pa.Table, request: dict) -> pa.Table:
        threads[f"shard-{shard['id'][0].as_py()}"] = threading.current_thread().name
        return shard

    runner = ShardRunner(SHARDS, where, max_concurrency=2, parallel_after_s=5.0)
    reply = runner.answer({}, None)
    assert sorted(reply.replies) == sorted(SHARDS) and reply.late == ()
    assert len(set(threads.values())) == 1 and next(iter(threads.values())).startswith("sg-lead")
    runner.close()


def test_a_stall_on_the_first_shard_moves_the_others_to_their_own_threads() -> None:
    GATES[0] = threading.Event()
    runner = ShardRunner(SHARDS, rows_above, max_concurrency=2, parallel_after_s=0.01)
    try:
        reply = runner.answer({"above": -1, "stall": 0}, 1.0)
        assert reply.late == ("shard-0",) and reply.errors == {}
        assert {name: xs(value) for name, value in reply.replies.items()} == oracle(-1, [1, 2, 3])
    finally:
        GATES[0].set()
        runner.close()


def test_parallel_after_s_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="parallel_after_s must be >= 0"):
        ShardRunner(SHARDS, rows_above, max_concurrency=1, parallel_after_s=-1.0)


def test_a_top_k_with_a_tie_break_goes_back_merged_into_one_reply() -> None:
    from engine.scatter_gather.aggregators import top_k_replies
    from engine.scatter_gather.gathering import Gathering

    top = top_k_replies("x", 3, tie_break="id")
    runner = ShardRunner(SHARDS, rows_above, max_concurrency=2, aggregator=top)
    try:
        reply = runner.answer({"above": 5, "fail": 3}, None)
        assert reply.replies == {} and reply.combined_shards == ("shard-0", "shard-1", "shard-2")
        assert reply.errors == {"shard-3": "ValueError: shard 3 refused"}
        assert xs(reply.combined) == [22, 21, 20]  # plain Python: the 3 largest x of shards 0-2 above 5
        gathering = Gathering(list(SHARDS))
        gathering.host_replied(reply.__class__(reply.replies, reply.errors, reply.late,
                                               decode_reply(reply.combined), reply.combined_shards))
        assert gathering.answered == ["shard-0", "shard-1", "shard-2"] and gathering.missing == ["shard-3"]
        assert [t["x"].to_pylist() for t in gathering.replies()] == [[22, 21, 20]]
    finally:
        runner.close()
    # Without a tie-break the grouping could change which tied rows win: sent one by one.
    assert not top_k_replies("x", 3).merges_in_groups
    runner = ShardRunner(SHARDS, rows_above, max_concurrency=2, aggregator=top_k_replies("x", 3))
    assert sorted(runner.answer({"above": 5}, None).replies) == sorted(SHARDS)
    runner.close()
