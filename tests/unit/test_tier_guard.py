"""The unit tier's guard really refuses to start Ray."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def test_starting_ray_in_a_unit_test_fails() -> None:
    import engine

    with pytest.raises(RuntimeError, match="unit tests never start Ray"):
        engine.connect(num_cpus=1)


def test_the_ray_executor_without_a_connection_is_one_clear_error() -> None:
    import pyarrow as pa

    import engine

    job = engine.MapReduceJob(name="unconnected", source=engine.TableSource(pa.table({"k": [1]})),
                              map=lambda t: t, reduce=lambda t: t, keys="k")
    pipeline = engine.Pipeline(engine.TableSource(pa.table({"k": [1]})), [engine.Stage("id", lambda t: t)],
                               engine.CollectSink())
    service = engine.ScatterGather([pa.table({"k": [1]})], lambda shard, request: shard, engine.concat_replies())
    for spec in (job, pipeline, service):
        with pytest.raises(engine.NotConnectedError, match=r"call engine.connect\(\) first"):
            engine.run(spec, "ray")
