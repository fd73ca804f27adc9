"""Unit tests of the inline (no Ray) scatter-gather executor, the test oracle."""

from __future__ import annotations

import time
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import engine
from engine.scatter_gather import (NotEnoughRepliesError,
                                   RequestExpiredError, ScatterGather, ScatterGatherOptions,
                                   UnknownRequestError, concat_replies, sum_replies)

pytestmark = pytest.mark.unit

SHARDS = [pa.table({"x": [1, 2, 3]}), pa.table({"x": [10, 20]}), pa.table({"x": [100]})]


def count_above(shard: pa.Table, request: dict) -> int:
    return int(pc.sum(pc.greater(shard["x"], request["above"])).as_py() or 0)


def fail_on_small_shards(shard: pa.Table, request: dict) -> int:
    if shard.num_rows < 2:
        raise ValueError(f"shard of {shard.num_rows} rows refused")
    return shard.num_rows


def rows_in_two_pieces(shard: pa.Table, request: dict) -> Iterator[pa.Table]:
    yield shard.slice(0, 1)
    yield shard.slice(1)


def test_exact_aggregate_with_all_workers() -> None:
    with engine.run(ScatterGather(SHARDS, count_above, sum_replies()), "inline") as service:
        result = service.gather({"above": 2})
    assert result.value == 1 + 2 + 1
    assert not result.partial and result.done
    assert result.answered == ["shard-0", "shard-1", "shard-2"] and result.missing == []


def test_a_failing_worker_is_missing_with_its_error() -> None:
    service = engine.run(ScatterGather(SHARDS, fail_on_small_shards, sum_replies()), "inline")
    result = service.gather({})
    assert result.value == 5 and result.partial
    assert result.missing == ["shard-2"]
    assert result.errors == {"shard-2": "ValueError: shard of 1 rows refused"}


def test_min_replies_not_met_is_a_clear_error_naming_the_missing() -> None:
    spec = ScatterGather(SHARDS, fail_on_small_shards, sum_replies(),
                         ScatterGatherOptions(min_replies=3))
    with pytest.raises(NotEnoughRepliesError, match="only 2 of 3 .*3 required; missing: shard-2"):
        engine.run(spec, "inline").gather({})


def test_generator_handlers_contribute_every_piece() -> None:
    service = engine.run(ScatterGather(SHARDS, rows_in_two_pieces, concat_replies()), "inline")
    assert service.gather({}).value.column("x").to_pylist() == [1, 2, 3, 10, 20, 100]


def test_long_running_requests_by_id_and_expiry() -> None:
    spec = ScatterGather(SHARDS, count_above, sum_replies(),
                         ScatterGatherOptions(result_ttl_s=0.2))
    service = engine.run(spec, "inline")
    request_id = service.submit({"above": 0})
    polled = service.poll(request_id)
    assert polled.value == 6 and polled.request_id == request_id and polled.done
    assert service.wait(request_id, timeout_s=1).value == 6
    time.sleep(0.25)
    with pytest.raises(RequestExpiredError, match=request_id):
        service.poll(request_id)
    with pytest.raises(UnknownRequestError, match="unknown request id 'nope'"):
        service.poll("nope")


def test_serve_rejects_an_unknown_executor_by_name() -> None:
    with pytest.raises(ValueError, match="unknown executor 'spark'"):
        engine.run(ScatterGather(SHARDS, count_above, sum_replies()), "spark")
