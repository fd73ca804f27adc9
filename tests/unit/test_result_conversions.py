"""JobResult / PipelineResult as pandas and Polars (inline executor, no Ray), compared with
pyarrow's and Polars' own conversion of a plain-Python oracle table; the errors for a
missing package, a missing connection and a result without a table."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import engine
from engine import ArrowDatasetSource, CollectSink, GroupByAggregate, MapReduceJob, ParquetSink, Pipeline, Stage, \
    TableSource
from engine.errors import MissingDependencyError, NotConnectedError, ResultNotCollectedError
from engine.io.convert import to_pandas, to_polars
from tests.unit.test_dataset_sources import write_parquet_files

pytestmark = pytest.mark.unit


def keep(batch: pa.Table) -> pa.Table:
    return batch.select(["key", "value"])


def add_double(batch: pa.Table) -> pa.Table:
    return batch.append_column("double", pc.multiply(batch["value"], 2))


@pytest.fixture
def job_result(tmp_path: Path) -> tuple[engine.JobResult, list[dict]]:
    """A sum-by-key job over an ArrowDatasetSource, inline, and its plain-Python oracle."""
    written = write_parquet_files(tmp_path / "in", [20, 13], row_group_rows=6)
    totals: dict[str, int] = defaultdict(int)
    for row in written:
        totals[row["key"]] += row["value"]
    job = MapReduceJob("sum-by-key", ArrowDatasetSource(str(tmp_path / "in"), columns=["key", "value"]), map=keep,
                       reduce=GroupByAggregate("key", {"value": "sum"}), keys="key", reducers=1,
                       output=str(tmp_path / "out"))
    result = engine.run(job, "inline").result(timeout_s=60)
    return result, [{"key": key, "value": totals[key]} for key in sorted(totals)]


def test_job_result_to_pandas_and_polars_equal_the_oracle_conversions(job_result) -> None:
    result, expected_rows = job_result
    arrow = result.to_arrow()
    assert arrow.to_pylist() == expected_rows  # one reducer: one part, sorted by key
    oracle = pa.Table.from_pylist(expected_rows, schema=arrow.schema)
    frame = result.to_pandas()
    pd.testing.assert_frame_equal(frame, oracle.to_pandas())
    assert frame.to_dict("records") == expected_rows
    polars_frame = result.to_polars()
    assert polars_frame.equals(pl.from_arrow(oracle))
    assert polars_frame.to_dicts() == expected_rows


def test_pipeline_result_to_pandas_and_polars_equal_the_oracle_conversions() -> None:
    values = list(range(-5, 40))
    table = pa.table({"key": [f"k{v % 3}" for v in values], "value": values})
    pipeline = Pipeline(TableSource(table, batch_rows=7), [Stage("double", add_double)], CollectSink())
    result = engine.run(pipeline.with_options(ordered=True), "inline").result(timeout_s=60)
    expected_rows = [{"key": f"k{v % 3}", "value": v, "double": 2 * v} for v in values]
    oracle = pa.Table.from_pylist(expected_rows, schema=result.to_arrow().schema)
    assert result.to_arrow() is result.table
    pd.testing.assert_frame_equal(result.to_pandas(), oracle.to_pandas())
    assert result.to_pandas().to_dict("records") == expected_rows
    assert result.to_polars().equals(pl.from_arrow(oracle))
    assert result.to_polars().to_dicts() == expected_rows


def test_numeric_columns_are_not_copied() -> None:
    table = pa.table({"n": np.arange(1000, dtype=np.int64), "x": np.linspace(0, 1, 1000)})
    arrow_n = table.column("n").chunk(0).to_numpy(zero_copy_only=True)
    assert np.shares_memory(to_pandas(table)["n"].to_numpy(), arrow_n)
    assert np.shares_memory(to_polars(table)["n"].to_numpy(), arrow_n)


def test_a_pipeline_result_without_a_collected_table_says_so(tmp_path: Path) -> None:
    pipeline = Pipeline(TableSource(pa.table({"key": ["a"], "value": [1]})), [Stage("double", add_double)],
                        ParquetSink(str(tmp_path / "out")))
    result = engine.run(pipeline, "inline").result(timeout_s=60)
    for convert in (result.to_arrow, result.to_pandas, result.to_polars, result.to_ray_dataset):
        with pytest.raises(ResultNotCollectedError) as raised:
            convert()
        assert "\n" not in str(raised.value) and "CollectSink" in str(raised.value)


@pytest.mark.parametrize("module, package, method", [("pandas", "pandas", "to_pandas"),
                                                     ("polars", "polars", "to_polars")])
def test_a_missing_package_is_named(job_result, monkeypatch: pytest.MonkeyPatch, module: str, package: str,
                                    method: str) -> None:
    result, _ = job_result
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    with pytest.raises(MissingDependencyError) as raised:
        getattr(result, method)()
    assert str(raised.value) == f"JobResult.{method}() needs the {package!r} package: pip install '{package}'"
    assert isinstance(raised.value, ImportError)


def test_to_ray_dataset_needs_a_connection(job_result) -> None:
    result, _ = job_result
    with pytest.raises(NotConnectedError) as raised:
        result.to_ray_dataset()
    assert str(raised.value).startswith("JobResult.to_ray_dataset() needs Ray: call engine.connect() first")
    collected = engine.run(Pipeline(TableSource(pa.table({"key": ["a"], "value": [1]})),
                                    [Stage("double", add_double)], CollectSink()), "inline").result(timeout_s=60)
    with pytest.raises(NotConnectedError):
        collected.to_ray_dataset()
