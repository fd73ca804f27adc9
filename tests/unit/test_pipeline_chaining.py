"""Unit tests: which stages are chained into one link, and that a chained run keeps every
stage's rows, metrics and dead letters (inline, against plain Python and an unchained run)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import AutoscalePolicy, CollectSink, Pipeline, PipelineOptions, Stage, TableSource
from engine.common.retry import RetryPolicy
from engine.errors import PipelineFailedError
from engine.pipeline.flow.plan import FlowPlan, chains

from tests.pipeline_filters import add_double, keep_even

pytestmark = pytest.mark.unit

NO_RETRY = RetryPolicy(max_attempts=1, base_delay_s=0.0, jitter=0.0)


def fail_on_multiples_of_5(batch: pa.Table) -> pa.Table:
    if pc.any(pc.equal(pc.divide(batch["x"], 5), pc.divide(pc.cast(batch["x"], pa.float64()), 5.0))).as_py():
        raise ValueError("a multiple of 5")
    return batch


def identity(batch: pa.Table) -> pa.Table:
    return batch


def _pipeline(table: pa.Table, batch_rows: int, chaining: bool, **stage_args: object) -> Pipeline:
    stages = [Stage("double", add_double, **stage_args), Stage("even", keep_even, **stage_args),  # type: ignore[arg-type]
              Stage("five", fail_on_multiples_of_5, retry=NO_RETRY, **stage_args)]  # type: ignore[arg-type]
    return Pipeline(TableSource(table, batch_rows), stages, CollectSink(), PipelineOptions(chaining=chaining))


def test_stages_chain_only_with_no_key_no_autoscale_and_the_same_replicas_and_cpus() -> None:
    table = pa.table({"x": [1]})

    def links(*stages: Stage, chaining: bool = True) -> list[list[str]]:
        pipeline = Pipeline(TableSource(table), list(stages), CollectSink(), PipelineOptions(chaining=chaining))
        return [[pipeline.stages[i].id for i in link] for link in chains(pipeline)]

    a, b, c = Stage("a", identity), Stage("b", identity), Stage("c", identity)
    assert links(a, b, c) == [["a", "b", "c"]]
    assert links(a, b, c, chaining=False) == [["a"], ["b"], ["c"]]
    assert links(a, Stage("b", identity, key="x"), c) == [["a"], ["b", "c"]]  # a keyed stage heads a link
    assert links(a, Stage("b", identity, replicas=2), c) == [["a"], ["b"], ["c"]]
    assert links(Stage("a", identity, replicas=2), Stage("b", identity, replicas=2), c) == [["a", "b"], ["c"]]
    assert links(a, Stage("b", identity, num_cpus=1), c) == [["a"], ["b"], ["c"]]
    assert links(a, Stage("b", identity, autoscale=AutoscalePolicy()), c) == [["a"], ["b"], ["c"]]
    plan = FlowPlan.from_pipeline(Pipeline(TableSource(table), [a, Stage("b", identity, key="x"), c], CollectSink()))
    assert [link.stage_ids for link in plan.stages] == [("a",), ("b", "c")]
    assert [plan.link_of(s) for s in "abc"] == [0, 1, 1]
    with pytest.raises(KeyError, match="no stage 'z'"):
        plan.link_of("z")


def test_chaining_option_is_validated() -> None:
    with pytest.raises(TypeError, match="chaining must be True or False"):
        PipelineOptions(chaining="yes")  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-60, 60), max_size=120), st.integers(1, 17))
def test_a_chained_run_equals_plain_python_and_the_unchained_run(values: list[int], batch_rows: int) -> None:
    table = pa.table({"x": pa.array(values, pa.int64())})
    chained = engine.run(_pipeline(table, batch_rows, chaining=True), "inline").result()
    unchained = engine.run(_pipeline(table, batch_rows, chaining=False), "inline").result()
    expected = [(x, 2 * x) for x in values if x % 2 == 0 and x % 5]
    for result in (chained, unchained):
        got = [] if result.table is None else list(zip(result.table["x"].to_pylist(), result.table["y"].to_pylist()))
        assert got == expected
        assert result.metrics["double"].rows_in == len(values)
        assert result.metrics["even"].rows_in == len(values)
        assert result.metrics["five"].rows_in == sum(1 for x in values if x % 2 == 0)
        assert result.metrics["five"].dead_letters == sum(1 for x in values if x % 2 == 0 and x % 5 == 0)
        assert [stage for stage, _, _ in result.unstored_dead] == ["five"] * len(result.unstored_dead)
        dead = sorted(x for _, rows, _ in result.unstored_dead for x in rows["x"].to_pylist())
        assert dead == sorted(x for x in values if x % 2 == 0 and x % 5 == 0)
    for stage in ("double", "even", "five"):
        for counter in ("batches_in", "batches_out", "rows_in", "rows_out", "dead_letters"):
            assert getattr(chained.metrics[stage], counter) == getattr(unchained.metrics[stage], counter), (stage, counter)
    assert chained.metrics["even"].max_pipe_depth == 0  # chained: no pipe of its own


def test_scaling_a_chained_stage_scales_its_link() -> None:
    table = pa.table({"x": pa.array(range(40), pa.int64())})
    handle = engine.run(_pipeline(table, 4, chaining=True), "inline")
    result = handle.result()
    assert result.metrics["double"].replicas == result.metrics["five"].replicas == 1
    from engine.pipeline.local import InlineRun

    run = InlineRun(_pipeline(table, 4, chaining=True))
    run.request_scale("five", 3)
    run.run()
    assert run.result is not None and run.error is None
    assert {run.result.metrics[s].replicas for s in ("double", "even", "five")} == {3}


def schema_by_first_row(batch: pa.Table) -> pa.Table:
    """Fails on a whole batch holding 3; its halves come back with column ``c`` of different
    types, which cannot be put together again."""
    if 3 in batch["x"].to_pylist():
        raise ValueError("holds a 3")
    return batch.append_column("c", batch["x"] if batch["x"][0].as_py() < 3 else pc.cast(batch["x"], pa.string()))


def test_an_error_raised_in_a_chained_stage_names_that_stage() -> None:
    table = pa.table({"x": pa.array([1, 2, 3, 4], pa.int64())})
    pipeline = Pipeline(TableSource(table, 4), [Stage("first", identity), Stage("second", schema_by_first_row, retry=NO_RETRY)],
                        CollectSink())
    with pytest.raises(PipelineFailedError, match=r"stage 'first' failed: .*in stage 'second' \(chained after 'first'\)"):
        engine.run(pipeline, "inline").result()
