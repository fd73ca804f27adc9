"""The Lambda architecture knows nothing about its application: a made-up one with a mean
(partials unlike finals), a distinct view whose key clashes in type with another view's
column, and no id column, against a plain-Python oracle over the offsets of every answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.common.combine import GroupByAggregate
from engine.lambda_arch import (EventContract, LambdaArchitecture, LambdaOptions, Query, ShardSnapshot,
                                SpeedLayerError, View)
from engine.runtime.run import run

pytestmark = pytest.mark.unit

SCHEMA = pa.schema([pa.field("sensor", pa.string(), nullable=False), pa.field("reading", pa.float64()),
                    pa.field("site", pa.int64(), nullable=False)])


def _readings(events: pa.Table) -> pa.Table:
    return events.select(["sensor", "reading"]).filter(pc.is_valid(events["reading"]))


def _sites(events: pa.Table) -> pa.Table:
    return pa.table({"sensor": events["site"]})  # "sensor" is an int64 here, a string in MEANS


MEANS = View("means", _readings, GroupByAggregate("sensor", {"reading": "mean"}), shard_by=("sensor",),
             columns=("sensor", "reading"))
SITES = View("sites", _sites, GroupByAggregate("sensor"), shard_by=("sensor",), columns=("site",))


def _means_on_shard(snapshot: ShardSnapshot, request: dict[str, Any]) -> dict[str, float]:
    return {row["sensor"]: row["reading"] for row in snapshot.table("means").to_pylist()}


def _merge_dicts(replies: list[dict], request: dict[str, Any]) -> dict:
    merged: dict = {}
    for reply in replies:
        assert not set(reply) & set(merged), "a key on two shards"
        merged.update(reply)
    return merged


def _sites_on_shard(snapshot: ShardSnapshot, request: dict[str, Any]) -> int:
    return snapshot.table("sites").num_rows


QUERIES = [Query("means", _means_on_shard, _merge_dicts, views=("means",)),
           Query("sites", _sites_on_shard, lambda replies, request: sum(replies), views=("sites",))]

_rows = st.lists(st.tuples(st.sampled_from(["a", "b", "c", None]), st.one_of(st.none(), st.integers(-5, 5)),
                           st.integers(0, 6)), min_size=1, max_size=12)


def _table(rows: list[tuple[str | None, int | None, int]]) -> pa.Table:
    return pa.table({"sensor": pa.array([r[0] for r in rows], pa.string()),
                     "reading": pa.array([r[1] for r in rows], pa.float64()),
                     "site": pa.array([r[2] for r in rows], pa.int32())})


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.tuples(_rows, st.booleans()), min_size=1, max_size=6), shards=st.integers(1, 3))
def test_a_generic_application_matches_its_oracle(tmp_path_factory: pytest.TempPathFactory,
                                                  batches: list[tuple[list, bool]], shards: int) -> None:
    directory = tmp_path_factory.mktemp("generic")
    spec = LambdaArchitecture(directory, EventContract(SCHEMA), [MEANS, SITES], QUERIES, LambdaOptions(shards=shards))
    stored: list[tuple[str, float | None, int]] = []

    def check(deployment: Any) -> None:
        means, sites = deployment.query("means"), deployment.query("sites")
        readings: dict[str, list[float]] = {}
        for sensor, reading, _ in stored[:means.speed_offset]:
            if reading is not None:
                readings.setdefault(sensor, []).append(reading)
        assert means.value.keys() == readings.keys()
        for sensor, values in readings.items():
            assert means.value[sensor] == pytest.approx(sum(values) / len(values))
        assert sites.value == len({site for _, _, site in stored[:sites.speed_offset]})

    with run(spec, "inline") as deployment:
        for rows, recompute in batches:
            ack = deployment.ingest(_table(rows))
            stored.extend((s, None if r is None else float(r), site) for s, r, site in rows if s is not None)
            assert (ack.end_offset, ack.rejected) == (len(stored), sum(r[0] is None for r in rows))
            check(deployment)
            if recompute:
                deployment.recompute_batch()
                check(deployment)
    with run(spec, "inline") as reopened:
        check(reopened)
        assert reopened.snapshot[1] == len(stored)


def _fragile(events: pa.Table) -> pa.Table:
    if pc.any(pc.equal(events["sensor"], "boom")).as_py():
        raise ValueError("cannot read sensor 'boom'")
    return events.select(["sensor", "reading"])


def test_a_view_that_fails_stops_the_speed_layer_with_a_clear_error(tmp_path: Path) -> None:
    view = View("means", _fragile, GroupByAggregate("sensor", {"reading": "mean"}), shard_by=("sensor",))
    spec = LambdaArchitecture(tmp_path, EventContract(SCHEMA), [view], QUERIES[:1])
    with run(spec, "inline") as deployment:
        good = _table([("a", 1, 1)])
        deployment.ingest(good)
        ack = deployment.ingest(_table([("boom", 2, 1)]))
        assert ack.accepted == 1  # durable and acknowledged: the log has it
        assert deployment.status()["state"] == "failed"
        with pytest.raises(SpeedLayerError, match=r"view 'means' failed on log offsets \[1, 2\): ValueError: "
                                                  r"cannot read sensor 'boom'"):
            deployment.ingest(good)
        assert deployment.end_offset == 2  # refused before storing
        assert deployment.query("means").value == {"a": 1.0}  # queries go on over what is visible
