"""Sources over other engines' datasets: a ``pyarrow.dataset.Dataset`` and a Ray Dataset.

Both are ``SplittableSource``s, so they serve a MapReduce job (one map task per split)
and a pipeline (``read()`` reads every split in order) alike.

- ``ArrowDatasetSource``: one split per Parquet row group (per fragment for other
  formats), scanned with Arrow's own projection (``columns``) and ``filter``.
- ``RayDatasetSource``: one split per block of the Ray Dataset.  The source holds the
  blocks' object references, not their rows; a map task fetches its one block on its
  worker, so a MapReduce job's input never passes through the driver.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from engine.errors import InputNotFoundError, SpecError
from engine.io.sources import PathsLike, SourceBatch, SplittableSource, _as_paths, _file_facts, _positive_int
from engine.io.splits import InputSplit, expand_paths

ROW_GROUP, FRAGMENT, RAY_BLOCK = "arrow-row-group", "arrow-fragment", "ray-block"
_SUFFIXES = {"parquet": (".parquet", ".pq"), "ipc": (".arrow", ".ipc", ".feather"),
             "arrow": (".arrow", ".ipc", ".feather"), "feather": (".arrow", ".ipc", ".feather"),
             "csv": (".csv",), "json": (".json", ".jsonl", ".ndjson"), "orc": (".orc",)}


def _check_columns(what: str, columns: Sequence[str] | None, names: Sequence[str]) -> tuple[str, ...] | None:
    """``columns`` as a tuple; ``SpecError`` naming the first one not in ``names``."""
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    for column in columns:
        if column not in names:
            raise SpecError(f"{what}: column {column!r} is not in the dataset's schema (columns: {list(names)})")
    return tuple(columns)


def _batches(table: pa.Table, location: str, batch_rows: int) -> Iterator[SourceBatch]:
    """Zero-copy slices of ``table`` of at most ``batch_rows`` rows."""
    for start in range(0, table.num_rows, batch_rows):
        piece = table.slice(start, batch_rows)
        yield SourceBatch(piece, location, np.arange(start, start + piece.num_rows))


def _parts(dataset: pads.Dataset) -> list[pads.Dataset]:
    """The datasets a union dataset is made of (recursively); a dataset that is no union itself."""
    if isinstance(dataset, pads.UnionDataset):
        return [part for child in dataset.children for part in _parts(child)]
    return [dataset]


def _open_paths(paths: PathsLike, format: str) -> pads.Dataset:
    if format not in _SUFFIXES:
        raise SpecError(f"ArrowDatasetSource: format {format!r} is not one of {sorted(_SUFFIXES)}")
    files = expand_paths(_as_paths(paths, "ArrowDatasetSource"), suffixes=_SUFFIXES[format])
    if not files:
        raise SpecError(f"ArrowDatasetSource: no {format} files in {paths!r}")
    try:
        return pads.dataset(files, format=format)
    except FileNotFoundError as error:
        raise InputNotFoundError(f"input path does not exist: {error}") from None
    except (pa.ArrowException, ValueError, OSError) as error:
        raise SpecError(f"ArrowDatasetSource: cannot open {files[0]} as {format}: {error}") from None


@dataclass(frozen=True)
class ArrowDatasetSource(SplittableSource):
    """A ``pyarrow.dataset.Dataset`` of files (a ``FileSystemDataset`` or a union of them),
    or files opened as one (``paths`` as for ``ParquetSource``, plus ``format``: "parquet",
    "ipc", "csv", ...; a directory yields its files with that format's suffixes).

    Splits (MapReduce map tasks): one per Parquet row group, skipping row groups whose
    statistics rule out ``filter``; one per fragment for other formats.  A split is read
    by Arrow's scanner in batches of at most ``batch_rows`` rows, with ``columns`` (a
    projection, default all) and ``filter`` (a ``pyarrow.compute`` Expression, e.g.
    ``pc.field("year") >= 2020``) applied; ``row_offsets`` number the rows a split
    delivers.  The dataset itself travels with the job (pyarrow pickles a file dataset
    as its file list), so every worker must see the files.
    """

    dataset: pads.Dataset
    columns: tuple[str, ...] | None = None
    filter: pc.Expression | None = None
    batch_rows: int = 65_536

    def __init__(self, dataset: Union[pads.Dataset, PathsLike], format: str = "parquet",
                 columns: Sequence[str] | None = None, filter: pc.Expression | None = None,
                 batch_rows: int = 65_536) -> None:
        if isinstance(dataset, (str, os.PathLike, list, tuple)):
            dataset = _open_paths(dataset, format)
        elif not isinstance(dataset, pads.Dataset):
            raise SpecError(f"ArrowDatasetSource needs a pyarrow.dataset.Dataset or paths, "
                            f"got {type(dataset).__name__}: {dataset!r:.80}")
        if any(not isinstance(part, pads.FileSystemDataset) for part in _parts(dataset)):
            raise SpecError("ArrowDatasetSource reads datasets of files (workers open them by path); "
                            "for in-memory tables use TableSource")
        _positive_int(batch_rows, "ArrowDatasetSource.batch_rows")
        if filter is not None and not isinstance(filter, pc.Expression):
            raise SpecError(f"ArrowDatasetSource.filter must be a pyarrow.compute.Expression, "
                            f"got {type(filter).__name__}: {filter!r:.80}")
        object.__setattr__(self, "dataset", dataset)
        object.__setattr__(self, "columns", _check_columns("ArrowDatasetSource", columns, dataset.schema.names))
        object.__setattr__(self, "filter", filter)
        object.__setattr__(self, "batch_rows", batch_rows)
        if not self._fragments():
            raise SpecError(f"ArrowDatasetSource: the dataset is empty (no files or fragments): {dataset!r:.120}")
        try:  # binds the projection and the filter to the schema; reads no data
            dataset.scanner(columns=self._columns(), filter=filter)
        except (pa.ArrowException, TypeError, ValueError) as error:
            raise SpecError(f"ArrowDatasetSource: filter {filter} does not apply to the dataset: "
                            f"{str(error).splitlines()[0]}") from None

    def _columns(self) -> list[str] | None:
        return list(self.columns) if self.columns is not None else None

    def _fragments(self) -> list[pads.Fragment]:
        return list(self.dataset.get_fragments())

    def plan_splits(self) -> list[InputSplit]:
        splits = []
        for index, fragment in enumerate(self._fragments()):
            path = getattr(fragment, "path", "")
            if isinstance(fragment, pads.ParquetFileFragment):
                for piece in fragment.split_by_row_group(self.filter, schema=self.dataset.schema):
                    splits.extend(InputSplit(ROW_GROUP, path, group.id, group.id + 1, index)
                                  for group in piece.row_groups)
            else:
                splits.append(InputSplit(FRAGMENT, path, 0, 0, index))
        return splits

    def read_split(self, split: InputSplit) -> Iterator[SourceBatch]:
        fragments = self._fragments()
        if split.kind not in (ROW_GROUP, FRAGMENT) or split.index >= len(fragments) \
                or getattr(fragments[split.index], "path", "") != split.path:
            raise SpecError(f"ArrowDatasetSource: split {split} is not one of this dataset's (did the dataset change?)")
        fragment = fragments[split.index]
        location = split.path or f"fragment-{split.index}"
        if split.kind == ROW_GROUP:
            fragment = fragment.subset(row_group_ids=[split.start])
            location = f"{location}#row-group-{split.start}"
        first = 0
        for batch in fragment.to_batches(schema=self.dataset.schema, columns=self._columns(), filter=self.filter,
                                         batch_size=self.batch_rows):
            if batch.num_rows:
                yield SourceBatch(pa.Table.from_batches([batch]), location, np.arange(first, first + batch.num_rows))
                first += batch.num_rows

    def empty_table(self) -> pa.Table:
        schema = self.dataset.schema
        if self.columns is not None:
            schema = pa.schema([schema.field(c) for c in self.columns])
        return schema.empty_table()

    def describe(self) -> dict:
        facts: dict[str, Any] = {"kind": "arrow-dataset", "dataset": type(self.dataset).__name__,
                                 "schema": str(self.dataset.schema), "columns": self._columns(),
                                 "filter": None if self.filter is None else str(self.filter)}
        facts["files"] = [_file_facts(list(part.files)) if isinstance(part.filesystem, pafs.LocalFileSystem)
                          else list(part.files) for part in _parts(self.dataset)]
        facts["formats"] = [part.format.default_extname for part in _parts(self.dataset)]
        return facts


def _ray_dataset_type() -> type:
    try:
        from ray.data import Dataset
    except ImportError:
        from engine.errors import MissingDependencyError

        raise MissingDependencyError("RayDatasetSource needs Ray Data: pip install 'ray[data]'") from None
    return Dataset


def _arrow_schema(schema: Any, blocks: list) -> pa.Schema:
    """A Ray Dataset's schema as Arrow's: Ray's own when its blocks are Arrow, else the
    first converted block's (fetched by a tiny task on the cluster, not its rows)."""
    import ray

    base = getattr(schema, "base_schema", None)
    if isinstance(base, pa.Schema):
        return pa.schema([base.field(name) for name in schema.names])  # without Ray's hidden columns
    return ray.get(ray.remote(num_cpus=0)(_schema_of).remote(blocks[0]))


def _schema_of(table: pa.Table) -> pa.Schema:
    return table.schema


@dataclass(frozen=True)
class RayDatasetSource(SplittableSource):
    """The rows of a ``ray.data.Dataset``, one split per block, read in batches of at most
    ``batch_rows`` rows (zero-copy slices of the block), optionally only ``columns``.

    Making the source needs ``engine.connect()`` first (``NotConnectedError``): it stops
    the engine's idle MapReduce workers (each holds a CPU until it times out, which Ray
    Data's tasks would wait for), executes the dataset once (``materialize()``) and keeps
    the object references of its
    blocks as Arrow tables (``to_arrow_refs()``: the blocks themselves when they are
    Arrow, else converted by Ray tasks on the cluster).  No row comes to this process
    then.  A MapReduce map task gets one block's reference and fetches the block on its
    worker (zero-copy from the object store of the worker's node; Ray moves a block held
    on another node there first); a pipeline reads each block where it reads its source,
    in the driver.  ``columns`` are checked against the dataset's schema.  The blocks
    stay in the object store while the source lives; a job resumed by a new driver cannot
    use them.
    """

    blocks: tuple[Any, ...]
    schema: pa.Schema
    columns: tuple[str, ...] | None = None
    batch_rows: int = 65_536

    def __init__(self, dataset: Any, columns: Sequence[str] | None = None, batch_rows: int = 65_536) -> None:
        if not isinstance(dataset, _ray_dataset_type()):
            raise SpecError(f"RayDatasetSource needs a ray.data.Dataset, got {type(dataset).__name__}: {dataset!r:.80}")
        _positive_int(batch_rows, "RayDatasetSource.batch_rows")
        from engine.io.convert import ray_data

        ray_data("RayDatasetSource")  # connected, and no idle engine worker holds the CPUs it needs
        materialized = dataset.materialize()
        if materialized.count() == 0:
            raise SpecError(f"RayDatasetSource: the dataset has no rows: {dataset!r:.120}")
        blocks = list(materialized.to_arrow_refs())
        schema = _arrow_schema(materialized.schema(), blocks)
        object.__setattr__(self, "blocks", tuple(blocks))
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "columns", _check_columns("RayDatasetSource", columns, schema.names))
        object.__setattr__(self, "batch_rows", batch_rows)

    def plan_splits(self) -> list[InputSplit]:
        return [InputSplit(RAY_BLOCK, f"block-{index}", 0, 0, index) for index in range(len(self.blocks))]

    def read_split(self, split: InputSplit) -> Iterator[SourceBatch]:
        import ray

        from engine.cluster import require_ray

        if split.kind != RAY_BLOCK or split.index >= len(self.blocks):
            raise SpecError(f"RayDatasetSource: split {split} is not one of this dataset's")
        require_ray("reading a RayDatasetSource")
        table = ray.get(self.blocks[split.index])
        table = table.select(list(self.columns) if self.columns is not None else self.schema.names)
        yield from _batches(table, split.path, self.batch_rows)

    def empty_table(self) -> pa.Table:
        if self.columns is None:
            return self.schema.empty_table()
        return pa.schema([self.schema.field(c) for c in self.columns]).empty_table()

    def describe(self) -> dict:
        return {"kind": "ray-dataset", "blocks": [ref.hex() for ref in self.blocks], "schema": str(self.schema),
                "columns": list(self.columns) if self.columns is not None else None}


__all__ = ["ArrowDatasetSource", "RayDatasetSource"]
