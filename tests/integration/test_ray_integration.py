"""Arrow and Ray datasets as inputs, results as Ray Datasets: both executors (the
``executor`` fixture) against plain-Python oracles."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import ray
import ray.cloudpickle

import engine
from engine import ArrowDatasetSource, CollectSink, MapReduceJob, Pipeline, RayDatasetSource, Stage, TableSource
from engine.errors import SpecError
from jobs.wordcount_job import SUM_COUNTS, count_words_in_lines, sum_word_counts
from tests.oracles import table_to_dict

pytestmark = pytest.mark.integration

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

WORDS = ["the", "cat", "sat", "on", "a", "mat", "é", "naïve", "x"]


def lines_of(count: int, seed: int) -> list[str]:
    """Deterministic lines of words (some empty, some with extra spaces and tabs)."""
    lines = []
    for number in range(count):
        width = (number * 7 + seed) % 6
        words = [WORDS[(number * 3 + k * 5 + seed) % len(WORDS)] for k in range(width)]
        lines.append(("  " if number % 4 == 0 else "") + (" \t".join(words) if number % 5 == 0 else " ".join(words)))
    return lines


def word_oracle(lines: list[str]) -> dict[str, int]:
    return dict(Counter(word for line in lines for word in line.split()))


def write_line_files(directory: Path, sizes: list[int]) -> list[str]:
    """Parquet files of a ``line`` column and a unique ``id``; returns every line written."""
    directory.mkdir(parents=True)
    written: list[str] = []
    for number, size in enumerate(sizes):
        lines = lines_of(size, number)
        pq.write_table(pa.table({"id": list(range(len(written), len(written) + size)), "line": lines}),
                       directory / f"part-{number}.parquet", row_group_size=17)
        written += lines
    return written


def wordcount(source, output: Path) -> MapReduceJob:
    return MapReduceJob("dataset-wordcount", source, map=count_words_in_lines, combine=sum_word_counts,
                        reduce=SUM_COUNTS, keys="word", reducers=3, output=str(output))


def tag(batch: pa.Table) -> pa.Table:
    return batch.append_column("length", pc.utf8_length(batch["line"]))


@pytest.fixture
def line_files(tmp_path: Path) -> tuple[Path, list[str]]:
    return tmp_path / "in", write_line_files(tmp_path / "in", [60, 45, 80])


def test_wordcount_over_an_arrow_dataset_source(executor: str, line_files, tmp_path: Path) -> None:
    directory, lines = line_files
    source = ArrowDatasetSource(str(directory), columns=["line"], batch_rows=10)
    result = engine.run(wordcount(source, tmp_path / "out"), executor).result(timeout_s=120)
    assert table_to_dict(result.table()) == word_oracle(lines)
    assert result.counters["map_input_records"] == len(lines)
    assert result.map_tasks == sum(pq.ParquetFile(p).metadata.num_row_groups for p in directory.glob("*.parquet"))


def test_wordcount_over_a_ray_dataset_source(executor: str, ray_runtime: object, line_files, tmp_path: Path) -> None:
    directory, lines = line_files
    dataset = ray.data.read_parquet(str(directory)).repartition(4)
    source = RayDatasetSource(dataset, columns=["line"], batch_rows=16)
    assert len(source.plan_splits()) == 4
    # The job carries block references, not rows: its input does not travel through the driver.
    assert all(isinstance(block, ray.ObjectRef) for block in source.blocks)
    (tmp_path / "big").mkdir()
    pq.write_table(pa.table({"id": list(range(4000)), "line": ["word " * 100] * 4000}), tmp_path / "big" / "b.parquet")
    big = RayDatasetSource(ray.data.read_parquet(str(tmp_path / "big")).repartition(4), columns=["line"])
    assert len(ray.cloudpickle.dumps(big)) < 50_000 < 2_000_000 == 4000 * len("word " * 100)
    result = engine.run(wordcount(source, tmp_path / "out"), executor).result(timeout_s=120)
    assert table_to_dict(result.table()) == word_oracle(lines)
    assert result.counters["map_input_records"] == len(lines)


@pytest.mark.parametrize("kind", ["arrow", "ray"])
def test_a_pipeline_delivers_every_row_of_a_dataset_once(executor: str, kind: str, line_files,
                                                         request: pytest.FixtureRequest) -> None:
    directory, lines = line_files
    if kind == "arrow":
        source = ArrowDatasetSource(str(directory), batch_rows=11)
    else:
        request.getfixturevalue("ray_runtime")
        source = RayDatasetSource(ray.data.read_parquet(str(directory)).repartition(3), batch_rows=11)
    result = engine.run(Pipeline(source, [Stage("tag", tag, replicas=2)], CollectSink()), executor).result(timeout_s=120)
    delivered = result.to_arrow()
    assert Counter(delivered.column("id").to_pylist()) == Counter(range(len(lines)))
    by_id = dict(zip(delivered.column("id").to_pylist(), delivered.column("length").to_pylist()))
    assert by_id == {number: len(line) for number, line in enumerate(lines)}


def test_a_pandas_backed_ray_dataset_is_read_as_arrow(executor: str, ray_runtime: object, tmp_path: Path) -> None:
    from engine.runtime.supervisor import stop_idle_workers

    # from_pandas runs Ray tasks at once: without this they would wait up to a minute for
    # the CPUs of the engine's idle workers (RayDatasetSource itself frees them first).
    stop_idle_workers()
    lines = lines_of(50, 3)
    dataset = ray.data.from_pandas([pd.DataFrame({"line": lines[:20]}), pd.DataFrame({"line": lines[20:]})])
    result = engine.run(wordcount(RayDatasetSource(dataset), tmp_path / "out"), executor).result(timeout_s=120)
    assert table_to_dict(result.table()) == word_oracle(lines)


def sorted_rows(rows: list[dict], key: str) -> list[dict]:
    return sorted(rows, key=lambda row: row[key])


def test_results_as_ray_datasets_have_the_result_rows(executor: str, ray_runtime: object, tmp_path: Path) -> None:
    lines = lines_of(120, 1)
    table = pa.table({"id": list(range(len(lines))), "line": lines})
    job_result = engine.run(wordcount(TableSource(table, batch_rows=25), tmp_path / "out"), executor).result(
        timeout_s=120)
    from_job = job_result.to_ray_dataset().take_all()
    assert {row["word"]: row["count"] for row in from_job} == word_oracle(lines) and len(from_job) == len(
        word_oracle(lines))
    pipeline_result = engine.run(Pipeline(TableSource(table, batch_rows=30), [Stage("tag", tag)], CollectSink()),
                                 executor).result(timeout_s=120)
    from_pipeline = pipeline_result.to_ray_dataset().take_all()
    assert sorted_rows(from_pipeline, "id") == [{"id": n, "line": line, "length": len(line)}
                                                for n, line in enumerate(lines)]


def test_bad_ray_datasets_get_one_line_errors(ray_runtime: object) -> None:
    empty = ray.data.from_arrow(pa.table({"line": pa.array([], pa.string())}))
    with pytest.raises(SpecError, match=r"^RayDatasetSource: the dataset has no rows"):
        RayDatasetSource(empty)
    with pytest.raises(SpecError) as raised:
        RayDatasetSource(ray.data.from_arrow(pa.table({"line": ["a b"]})), columns=["nope"])
    assert str(raised.value) == "RayDatasetSource: column 'nope' is not in the dataset's schema (columns: ['line'])"
