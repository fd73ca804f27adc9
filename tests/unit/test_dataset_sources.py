"""ArrowDatasetSource without Ray: splits, projections, filters, pickling and bad input;
RayDatasetSource's checks that need no cluster.  Oracles: the rows as written, in Python."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.feather as feather
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import ArrowDatasetSource, RayDatasetSource
from engine.io import dataset_sources
from engine.errors import InputNotFoundError, NotConnectedError, SpecError

pytestmark = pytest.mark.unit

KEYS = ["ant", "bee", "cat", "dog"]


def rows_of(first_id: int, count: int) -> list[dict]:
    """Plain-Python rows: unique ids, a key from KEYS, a value that depends on the id."""
    return [{"id": i, "key": KEYS[i % len(KEYS)], "value": (i * 7) % 23} for i in range(first_id, first_id + count)]


def write_parquet_files(directory: Path, sizes: list[int], row_group_rows: int) -> list[dict]:
    """One Parquet file per size (row groups of ``row_group_rows``); returns every row written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[dict] = []
    for number, size in enumerate(sizes):
        rows = rows_of(len(written), size)
        pq.write_table(pa.Table.from_pylist(rows), directory / f"f{number:02d}.parquet", row_group_size=row_group_rows)
        written += rows
    (directory / "_SUCCESS").write_bytes(b"")  # markers are not data
    return written


def read_all(source: ArrowDatasetSource) -> list[dict]:
    rows: list[dict] = []
    for split in source.plan_splits():
        for batch in source.read_split(split):
            assert batch.table.num_rows <= source.batch_rows
            rows += batch.table.to_pylist()
    return rows


def row_groups(directory: Path) -> int:
    return sum(pq.ParquetFile(path).metadata.num_row_groups for path in sorted(directory.glob("*.parquet")))


@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4), row_group_rows=st.integers(1, 16),
       batch_rows=st.integers(1, 10))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_every_row_is_read_exactly_once_one_split_per_row_group(tmp_path_factory: pytest.TempPathFactory,
                                                                sizes: list[int], row_group_rows: int,
                                                                batch_rows: int) -> None:
    directory = tmp_path_factory.mktemp("ds")
    written = write_parquet_files(directory, sizes, row_group_rows)
    source = ArrowDatasetSource(str(directory), batch_rows=batch_rows)
    assert len(source.plan_splits()) == row_groups(directory)
    rows = read_all(source)
    assert Counter(r["id"] for r in rows) == Counter(r["id"] for r in written)
    assert sorted(rows, key=lambda r: r["id"]) == written
    assert [b.table.to_pylist() for b in source.read()] == [
        b.table.to_pylist() for s in source.plan_splits() for b in source.read_split(s)]


def test_a_dataset_object_with_columns_and_a_filter(tmp_path: Path) -> None:
    written = write_parquet_files(tmp_path / "in", [30, 25, 10], row_group_rows=5)
    dataset = pads.dataset(sorted(str(p) for p in (tmp_path / "in").glob("*.parquet")), format="parquet")
    source = ArrowDatasetSource(dataset, columns=["value", "id"], filter=pc.field("value") > 15, batch_rows=3)
    rows = read_all(source)
    assert sorted(rows, key=lambda r: r["id"]) == [{"value": r["value"], "id": r["id"]} for r in written
                                                   if r["value"] > 15]
    assert source.empty_table().schema.names == ["value", "id"]
    assert source.empty_table().num_rows == 0
    assert len(source.plan_splits()) <= row_groups(tmp_path / "in")


def test_row_groups_ruled_out_by_statistics_are_not_splits(tmp_path: Path) -> None:
    write_parquet_files(tmp_path / "in", [40], row_group_rows=10)  # ids 0-9, 10-19, 20-29, 30-39
    source = ArrowDatasetSource(str(tmp_path / "in"), filter=pc.field("id") >= 25)
    assert [(s.start, s.end) for s in source.plan_splits()] == [(2, 3), (3, 4)]
    assert sorted(r["id"] for r in read_all(source)) == list(range(25, 40))


def test_a_pickled_source_reads_the_same_rows(tmp_path: Path) -> None:
    # Ray ships the source to workers pickled: a copy must read every split alike.
    write_parquet_files(tmp_path / "in", [12, 9], row_group_rows=4)
    source = ArrowDatasetSource(str(tmp_path / "in"), columns=["id", "key"], filter=pc.field("key") != "cat")
    copy = pickle.loads(pickle.dumps(source))
    for split in source.plan_splits():
        assert [b.table for b in copy.read_split(split)] == [b.table for b in source.read_split(split)]
    assert copy.describe() == source.describe()


def test_ipc_files_are_one_split_each(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    written: list[dict] = []
    for number, size in enumerate([7, 0, 12]):
        rows = rows_of(len(written), size)
        table = pa.Table.from_pylist(rows) if rows else pa.Table.from_pylist(rows_of(0, 1)).slice(0, 0)
        feather.write_feather(table, tmp_path / "in" / f"f{number}.arrow")
        written += rows
    source = ArrowDatasetSource(str(tmp_path / "in"), format="ipc", batch_rows=5)
    assert [s.kind for s in source.plan_splits()] == ["arrow-fragment"] * 3
    assert sorted(read_all(source), key=lambda r: r["id"]) == written


def test_partition_columns_of_a_hive_dataset_are_read(tmp_path: Path) -> None:
    written = []
    for year in (2023, 2024):
        part = tmp_path / "in" / f"year={year}"
        part.mkdir(parents=True)
        rows = rows_of(len(written), 6)
        pq.write_table(pa.Table.from_pylist(rows), part / "data.parquet", row_group_size=4)
        written += [{**r, "year": year} for r in rows]
    dataset = pads.dataset(str(tmp_path / "in"), format="parquet", partitioning="hive")
    source = ArrowDatasetSource(dataset, filter=pc.field("year") == 2024)
    assert sorted(read_all(source), key=lambda r: r["id"]) == [r for r in written if r["year"] == 2024]


def test_describe_changes_when_a_file_changes(tmp_path: Path) -> None:
    write_parquet_files(tmp_path / "in", [5], row_group_rows=5)
    before = ArrowDatasetSource(str(tmp_path / "in")).describe()
    write_parquet_files(tmp_path / "in", [6], row_group_rows=5)
    assert ArrowDatasetSource(str(tmp_path / "in")).describe() != before


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("make, error, needle", [
    (lambda d: ArrowDatasetSource(42), SpecError, "got int: 42"),
    (lambda d: ArrowDatasetSource(str(d / "missing")), InputNotFoundError, "missing"),
    (lambda d: ArrowDatasetSource(str(d / "empty")), InputNotFoundError, "holds no *.parquet or *.pq files"),
    (lambda d: ArrowDatasetSource(pads.FileSystemDataset([], pa.schema([("id", pa.int64())]), pads.ParquetFileFormat(),
                                                         pafs.LocalFileSystem())), SpecError, "the dataset is empty"),
    (lambda d: ArrowDatasetSource(str(d / "in"), columns=["id", "nope"]), SpecError, "column 'nope'"),
    (lambda d: ArrowDatasetSource(str(d / "in"), filter="value > 3"), SpecError, "got str: 'value > 3'"),
    (lambda d: ArrowDatasetSource(str(d / "in"), filter=pc.field("nope") > 3), SpecError, "nope"),
    (lambda d: ArrowDatasetSource(str(d / "in"), format="xls"), SpecError, "format 'xls'"),
    (lambda d: ArrowDatasetSource(str(d / "in"), batch_rows=0), SpecError, "batch_rows must be an int >= 1, got 0"),
    (lambda d: ArrowDatasetSource(str(d / "not-parquet")), SpecError, "bad.parquet"),
    (lambda d: ArrowDatasetSource(pads.dataset(pa.table({"id": [1]}))), SpecError, "for in-memory tables use TableSource"),
])
def test_bad_input_gets_a_one_line_error_naming_it(tmp_path: Path, make, error: type, needle: str) -> None:
    write_parquet_files(tmp_path / "in", [3], row_group_rows=3)
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-parquet").mkdir()
    (tmp_path / "not-parquet" / "bad.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(error) as raised:
        make(tmp_path)
    assert needle in _one_line(raised)


def test_ray_dataset_source_refuses_what_is_not_a_dataset() -> None:
    with pytest.raises(SpecError) as raised:
        RayDatasetSource([{"id": 1}])
    assert "needs a ray.data.Dataset, got list" in _one_line(raised)


def test_ray_dataset_source_needs_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    class Dataset:
        """Stands in for ray.data.Dataset (the unit tier does not import Ray)."""

    # the type check passes; nothing may run without Ray
    monkeypatch.setattr(dataset_sources, "_ray_dataset_type", lambda: Dataset)
    with pytest.raises(NotConnectedError) as raised:
        RayDatasetSource(Dataset())
    assert "RayDatasetSource needs Ray: call engine.connect() first" in _one_line(raised)
