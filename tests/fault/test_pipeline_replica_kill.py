"""Fault tests: killing stage replicas mid-run loses and duplicates nothing.

The guarantee under test: exactly-once delivery to the sink for deterministic filters.
Calls of a dead replica are resent to its replacement; the sink commits each batch
(by its stable name) once.
"""

from __future__ import annotations

import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import ray
import ray.cloudpickle

import engine
from engine.cluster import connect
from engine import CollectSink, Pipeline, PipelineOptions, Stage, TableSource

pytestmark = pytest.mark.fault

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def slow_double(batch: pa.Table) -> pa.Table:
    time.sleep(0.02)
    return batch.append_column("y", pc.multiply(batch["x"], 2))


def keep_odd(batch: pa.Table) -> pa.Table:
    return batch.filter(pc.equal(pc.bit_wise_and(batch["x"], 1), 1))


def run_and_kill(stage_id: str, keyed: bool, kills: int) -> None:
    total = 12_000
    table = pa.table({"x": pa.array(range(total), pa.int64()), "k": pa.array([i % 13 for i in range(total)], pa.int64())})
    stages = [
        Stage("double", slow_double, replicas=2, key="k" if keyed else None),
        Stage("odd", keep_odd, replicas=2, key="k" if keyed else None),
    ]
    handle = engine.run(Pipeline(TableSource(table, batch_rows=100), stages, CollectSink(), PipelineOptions(ordered=keyed)))
    killed = 0
    while killed < kills:
        if handle.metrics()["sink"].batches_in >= 5 * (killed + 1):
            assert not handle.done(), "the run ended before the replica could be killed mid-run"
            ray.kill(handle.replica_actors(stage_id)[killed % 2], no_restart=True)
            killed += 1
        time.sleep(0.005)
    result = handle.result(timeout_s=180)
    assert result.metrics[stage_id].replica_restarts >= kills
    if not keyed:  # chained into one link with "double": they share its replicas
        assert result.metrics["odd"].replica_restarts == result.metrics["double"].replica_restarts
    x = result.table["x"].to_pylist()
    assert sorted(x) == list(range(1, total, 2))  # every row delivered, none twice
    assert result.table["y"].to_pylist() == [2 * v for v in x]
    if keyed:
        for key in range(13):
            per_key = result.table.filter(pc.equal(result.table["k"], key))["x"].to_pylist()
            assert per_key == sorted(per_key)  # source order per key survives the kills


def test_killing_replicas_mid_run_delivers_every_row_exactly_once(isolated_ray: None) -> None:
    connect(num_cpus=2)
    try:
        run_and_kill("double", keyed=False, kills=2)
        run_and_kill("odd", keyed=True, kills=1)
    finally:
        ray.shutdown()
