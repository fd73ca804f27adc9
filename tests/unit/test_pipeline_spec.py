"""Unit tests: pipeline descriptions are validated, with errors naming the bad thing."""

from __future__ import annotations

import pyarrow as pa
import pytest

from engine import (
    AutoscalePolicy,
    CollectSink,
    IteratorSource,
    Pipeline,
    PipelineOptions,
    Stage,
    TableSource,
)
from engine.pipeline.autoscale import Autoscaler
from engine.pipeline.ordering import SequenceTracker

pytestmark = pytest.mark.unit


def identity(batch: pa.Table) -> pa.Table:
    return batch


def source() -> TableSource:
    return TableSource(pa.table({"x": [1, 2, 3]}))


def test_valid_pipeline_keeps_stages_in_order() -> None:
    pipeline = Pipeline(source(), [Stage("a", identity), Stage("b", identity, replicas=3)], CollectSink())
    assert [stage.id for stage in pipeline.stages] == ["a", "b"]
    assert pipeline.stage("b").replicas == 3


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Stage("bad id!", identity), "stage id"),
        (lambda: Stage("a", "not callable"), "callable"),  # type: ignore[arg-type]
        (lambda: Stage("a", identity, replicas=0), "replicas"),
        (lambda: Stage("a", identity, pipe_capacity=0), "pipe_capacity"),
        (lambda: Stage("a", identity, key=""), "key"),
        (lambda: Stage("a", identity, retry="often"), "RetryPolicy"),  # type: ignore[arg-type]
        (lambda: Stage("a", identity, replicas=5, autoscale=AutoscalePolicy(1, 4)), "autoscale"),
        (lambda: AutoscalePolicy(min_replicas=3, max_replicas=2), "min_replicas"),
        (lambda: AutoscalePolicy(high_water=2, low_water=2), "low_water"),
        (lambda: PipelineOptions(sink_capacity=0), "sink_capacity"),
        (lambda: TableSource(pa.table({"x": [1]}), batch_rows=0), "batch_rows"),
        (lambda: Pipeline(source(), [], CollectSink()), "at least one stage"),
        (lambda: Pipeline(source(), [Stage("a", identity), Stage("a", identity)], CollectSink()), "duplicate stage id 'a'"),
        (lambda: Pipeline([1, 2], [Stage("a", identity)], CollectSink()), "Source"),  # type: ignore[arg-type]
    ],
)
def test_bad_descriptions_are_refused_with_a_clear_message(make: object, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()  # type: ignore[operator]


def test_unknown_stage_lookup_names_the_stage() -> None:
    pipeline = Pipeline(source(), [Stage("a", identity)], CollectSink())
    with pytest.raises(KeyError, match="'nope'"):
        pipeline.stage("nope")


def test_iterator_source_refuses_non_arrow_items() -> None:
    with pytest.raises(TypeError, match="IteratorSource"):
        list(IteratorSource([{"x": 1}]).batches())  # type: ignore[list-item]


def test_autoscaler_grows_after_sustained_high_water_and_shrinks_after_low() -> None:
    scaler = Autoscaler(AutoscalePolicy(min_replicas=1, max_replicas=3, high_water=4, low_water=1, sustain_s=1.0))
    assert scaler.decide(depth=5, replicas=1, now=0.0) == 1
    assert scaler.decide(depth=5, replicas=1, now=0.5) == 1
    assert scaler.decide(depth=5, replicas=1, now=1.0) == 2
    assert scaler.decide(depth=5, replicas=3, now=5.0) == 3  # timer restarted, and max is 3
    assert scaler.decide(depth=5, replicas=3, now=9.0) == 3
    assert scaler.decide(depth=0, replicas=3, now=10.0) == 3
    assert scaler.decide(depth=0, replicas=3, now=11.0) == 2
    assert scaler.decide(depth=3, replicas=2, now=20.0) == 2  # between the marks: no change


def test_sequence_tracker_releases_in_source_order_only_when_complete() -> None:
    tracker: SequenceTracker[str] = SequenceTracker(ordered=True)
    tracker.open(0, 2)
    tracker.open(1, 1)
    tracker.arrive(1, (1,), "b1")
    assert tracker.take_released() == []
    tracker.fork(0, 0)  # one piece of batch 0 was filtered out entirely
    tracker.arrive(0, (0, 1), "a1")
    assert tracker.take_released() == ["a1", "b1"]
    assert tracker.held() == 0


def test_unordered_tracker_releases_at_once() -> None:
    tracker: SequenceTracker[str] = SequenceTracker(ordered=False)
    tracker.open(0, 1)
    tracker.open(1, 1)
    tracker.arrive(1, (1,), "b")
    assert tracker.take_released() == ["b"]


def test_after_a_cluster_loss_only_a_resumable_pipeline_is_run_again(tmp_path) -> None:
    from engine import LiveFeed, ParquetSink
    from engine.pipeline.executors import pipeline_name, resume_blocker

    stages = [Stage("double", identity), Stage("odd", identity, key="x", replicas=2)]
    resumable = Pipeline(source(), stages, ParquetSink(str(tmp_path / "out")))
    assert resume_blocker(resumable) is None
    assert pipeline_name(resumable) == "double->odd"
    collecting = Pipeline(source(), stages, CollectSink())
    assert resume_blocker(collecting) == ("resume needs a sink that remembers its commits (a ParquetSink); this "
                                          "pipeline writes to a CollectSink")
    live = Pipeline(LiveFeed(capacity=2), stages, ParquetSink(str(tmp_path / "live")))
    assert resume_blocker(live).startswith("its source is a LiveFeed")
    scaling = Pipeline(source(), [Stage("k", identity, key="x", autoscale=AutoscalePolicy(min_replicas=1,
                                                                                          max_replicas=2))],
                       ParquetSink(str(tmp_path / "scaling")))
    assert resume_blocker(scaling) == "resume needs fixed replica counts on keyed stages; stage 'k' autoscales"
