"""The combine contract in MapReduce, inline: a ``KeyedCombineFn`` combine ships partials
through the shuffle and the same combiner as reduce merges and finalizes them, so counts
and means come out right.  Compared with plain Python."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.mapreduce.tasks import run_map_task

pytestmark = pytest.mark.unit

ROWS = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]), st.one_of(st.none(), st.integers(-50, 50))),
                max_size=60)


def rows_table(rows: list[tuple[str, int | None]]) -> pa.Table:
    return pa.table({"key": pa.array([k for k, _ in rows], pa.string()),
                     "x": pa.array([v for _, v in rows], pa.int64())})


def oracle(rows: list[tuple[str, int | None]]) -> dict[str, tuple[int, float | None]]:
    """key -> (count of non-null x, mean of non-null x), in plain Python."""
    values: dict[str, list[int]] = defaultdict(list)
    for key, value in rows:
        values.setdefault(key, [])
        if value is not None:
            values[key].append(value)
    return {key: (len(v), sum(v) / len(v) if v else None) for key, v in values.items()}


def result_dict(table: pa.Table, column: str) -> dict:
    return dict(zip(table.column("key").to_pylist(), table.column(column).to_pylist()))


@given(rows=ROWS, batch_rows=st.integers(1, 7), split_rows=st.integers(1, 20), reducers=st.integers(1, 3))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_count_and_mean_through_combine_and_reduce_equal_plain_python(
        tmp_path_factory: pytest.TempPathFactory, rows: list, batch_rows: int, split_rows: int, reducers: int) -> None:
    base = tmp_path_factory.mktemp("stats")
    table = rows_table(rows)
    expected = oracle(rows)
    for function, position in (("count", 0), ("mean", 1)):
        stats = engine.GroupByAggregate("key", {"x": function})
        job = engine.MapReduceJob(name=f"stats-{function}",
                                  source=engine.TableSource(table, batch_rows=batch_rows, split_rows=split_rows),
                                  map=lambda t: t, combine=stats, reduce=stats, keys="key", reducers=reducers,
                                  output=str(base / function))
        got = result_dict(engine.run(job, "inline").result().table(), "x")
        want = {key: values[position] for key, values in expected.items()}
        assert got.keys() == want.keys()
        for key, value in want.items():
            if value is None:
                assert got[key] is None, key
            else:
                assert got[key] == pytest.approx(value), key


def test_map_tasks_ship_partials_when_the_reduce_is_the_same_combiner() -> None:
    table = rows_table([("a", 1), ("a", 3), ("b", None), ("b", 4)])
    mean = engine.GroupByAggregate("key", {"x": "mean"})
    job = engine.MapReduceJob(name="means", source=engine.TableSource(table, batch_rows=1, split_rows=100), map=lambda t: t,
                              combine=mean, reduce=mean, keys="key", reducers=1)
    shipped = run_map_task(job, job.source.plan_splits()[0], 1).partitions[0].sort_by("key")
    assert shipped.to_pydict() == {"key": ["a", "b"], "x__sum": [4.0, 4.0], "x__count": [2, 1]}
    plain = engine.MapReduceJob(name="means", source=job.source, map=lambda t: t, combine=mean,
                                reduce=lambda t: t, keys="key", reducers=1)
    finalized = run_map_task(plain, plain.source.plan_splits()[0], 1).partitions[0].sort_by("key")
    assert finalized.to_pydict() == {"key": ["a", "b"], "x": [2.0, 4.0]}


def test_a_plain_function_combine_still_works(tmp_path: Path) -> None:
    table = rows_table([(k, 1) for k in "abcab" * 20])

    def total(t: pa.Table) -> pa.Table:
        return t.group_by("key").aggregate([("x", "sum")]).rename_columns(["key", "x"])

    job = engine.MapReduceJob(name="plain", source=engine.TableSource(table, batch_rows=7, split_rows=30),
                              map=lambda t: t, combine=total, reduce=total, keys="key", reducers=2,
                              output=str(tmp_path / "out"))
    assert result_dict(engine.run(job, "inline").result().table(), "x") == {"a": 40, "b": 40, "c": 20}


def test_a_combiner_that_does_not_group_by_the_job_keys_is_refused() -> None:
    with pytest.raises(engine.SpecError, match=r"combine groups by \['other'\]"):
        engine.MapReduceJob(name="bad", source=engine.TableSource(rows_table([])), map=lambda t: t,
                            combine=engine.GroupByAggregate("other", {"x": "sum"}), reduce=lambda t: t, keys="key")


@given(rows=ROWS)
@settings(max_examples=60, deadline=None)
def test_a_group_by_aggregate_called_on_one_table_equals_plain_python(rows: list) -> None:
    # One group-by on a single table (its partial rows are already one per key).
    table = rows_table(rows)
    aggregate = engine.GroupByAggregate("key", {"x": "mean"})
    got = result_dict(aggregate(table), "x")
    for key, (_, mean) in oracle(rows).items():
        assert got[key] == (None if mean is None else pytest.approx(mean)), key
    for function, position in (("count", 0),):
        counted = result_dict(engine.GroupByAggregate("key", {"x": function})(table), "x")
        assert counted == {key: values[position] for key, values in oracle(rows).items()}
    sums = result_dict(engine.GroupByAggregate("key", {"x": "sum"})(table), "x")
    want = defaultdict(int)
    for key, value in rows:
        want[key] += value or 0
    assert {k: v or 0 for k, v in sums.items()} == dict(want)


@given(rows=st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 2),
                               st.one_of(st.none(), st.integers(-9, 9)), st.one_of(st.none(), st.floats(-5, 5))),
                     max_size=40))
@settings(max_examples=60, deadline=None)
def test_acero_group_by_built_directly_equals_arrows_group_by(rows: list) -> None:
    from engine.common.combine import arrow_group_by

    table = pa.table({"k": pa.array([r[0] for r in rows], pa.string()), "j": pa.array([r[1] for r in rows], pa.int64()),
                      "v": pa.array([r[2] for r in rows], pa.int64()), "f": pa.array([r[3] for r in rows], pa.float64())})
    specs = [("v", "sum"), ("v", "count"), ("f", "min"), ("f", "max"), ("v", "mean")]
    assert arrow_group_by(table, ["k", "j"], specs).equals(table.group_by(["k", "j"], use_threads=False).aggregate(specs))


def test_small_text_inputs_get_one_reduce_per_worker_and_large_ones_two() -> None:
    from engine.io.splits import InputSplit
    from engine.mapreduce.rules import SHUFFLE_PARTITION_BYTES, default_reducers

    def text(total: int) -> list[InputSplit]:
        return [InputSplit("text", "f", 0, total)]

    assert default_reducers(2) == 4
    assert default_reducers(2, text(1 << 20)) == 2  # one wave of reduces, not two
    assert default_reducers(2, text(3 * SHUFFLE_PARTITION_BYTES)) == 3
    assert default_reducers(2, text(64 * SHUFFLE_PARTITION_BYTES)) == 4
    assert default_reducers(3, [InputSplit("parquet", "f", 0, 1)]) == 6  # size unknown: twice the workers


@given(workers=st.none() | st.integers(1, 8), slots=st.none() | st.integers(1, 8), named=st.booleans(),
       cpus=st.integers(1, 64), nodes=st.integers(1, 8))
def test_the_worker_shape_covers_what_the_options_ask(workers: int | None, slots: int | None, named: bool,
                                                       cpus: int, nodes: int) -> None:
    from engine.mapreduce.rules import worker_shape

    got_workers, got_slots = worker_shape(workers, slots, named, cpus, nodes)
    assert got_workers >= 1 and got_slots >= 1
    if workers is not None:  # asked for: exactly that many, one slot each by default
        assert (got_workers, got_slots) == (workers, slots or 1)
    elif named:  # a fault plan names workers by number: one single-slot worker per CPU
        assert (got_workers, got_slots) == (cpus, slots or 1)
    elif slots is not None:  # as few workers of that size as cover the CPUs
        assert got_slots == slots and (got_workers - 1) * slots < cpus <= got_workers * slots
    elif nodes == 1:  # as a Spark executor: one process, a task slot per core
        assert (got_workers, got_slots) == (1, cpus)
    else:
        assert (got_workers, got_slots) == (cpus, 1)


def test_slots_per_worker_must_be_a_positive_int() -> None:
    from engine.errors import SpecError

    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(SpecError, match="slots_per_worker"):
            engine.JobOptions(slots_per_worker=bad).validate()  # type: ignore[arg-type]
    engine.JobOptions(slots_per_worker=3).validate()
