"""The batch layer: every view recomputed from the master log up to offset W, by MapReduce.

One MapReduce job over the log below W (``engine.run(job, "inline" | "ray")``) computes
every view at once: the map emits each view's partials tagged with the view's code and a
stable hash of its combine keys, in one *union* table whose columns are shared between
views where name and type agree; the shuffle key is (code, key hash), so every key of a
view meets in one reducer, which merges its partials with the view's combiner (and
finalizes batch-only views).  One job instead of one per view reads the log once and
pays the start-up once.

A version is written under ``<dir>/views/batch-<W>/`` (one Parquet file per view and a
``manifest.json``, each written atomically); ``views/CURRENT.json`` is switched to it
last (blue-green), so a reopened directory always finds a complete version.  Nothing is
pickled: JSON and Parquet.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.common.atomic_files import write_json_atomically, write_parquet_atomically
from engine.common.hashing import partition_ids
from engine.errors import SpecError
from engine.lambda_arch.log import MasterLog
from engine.lambda_arch.spec import LambdaArchitecture, View
from engine.lambda_arch.speed_layer import speed_partials
from engine.runtime.priority import call_at_lower_priority

_VERSION_DIR = "batch-{:016d}"
_CODE, _KEY_HASH = "view", "key_hash"
_HASH_RANGE = 1 << 62


@dataclass(frozen=True)
class BatchViews:
    """A complete batch view covering log offsets ``[0, version)``: per view its table
    (partials; finalized rows for a batch-only view)."""

    version: int
    tables: dict[str, pa.Table]
    elapsed_s: float = 0.0


def _read_events(log: MasterLog, version: int, spec: LambdaArchitecture) -> pa.Table | None:
    """The log below ``version`` (the columns the views read) as one table; None if empty."""
    tables = list(log.iter_tables(0, version, _read_columns(spec)))
    return pa.concat_tables(tables) if tables else None


def view_schemas(spec: LambdaArchitecture) -> tuple[dict[str, pa.Schema], dict[str, pa.Schema]]:
    """(partial schema, stored schema) of every view, found by running it on no events."""
    events = spec.contract.log_schema.empty_table()
    partial, stored = {}, {}
    for view in spec.views:
        try:
            table = speed_partials(view, events)
            partial[view.name] = table.schema
            stored[view.name] = view.combine.finalize([table]).schema if view.batch_only else table.schema
        except Exception as error:
            raise SpecError(f"view {view.name!r} fails on an empty batch of events: "
                            f"{type(error).__name__}: {error}") from error
    return partial, stored


@dataclass(frozen=True)
class UnionLayout:
    """How the rows of every view share one table in the batch job.

    Code ``i`` tags partial rows of view ``i``, code ``n + i`` finalized rows of
    batch-only view ``i``; ``mappings[code]`` maps union columns to that code's columns.
    """

    views: tuple[View, ...]
    schema: pa.Schema
    mappings: tuple[dict[str, str], ...]
    targets: tuple[pa.Schema | None, ...]

    @staticmethod
    def build(views: tuple[View, ...], partial: dict[str, pa.Schema], stored: dict[str, pa.Schema]) -> "UnionLayout":
        """The layout of ``views`` given their partial and stored schemas."""
        targets = [partial[v.name] for v in views] + [stored[v.name] if v.batch_only else None for v in views]
        types: dict[str, pa.DataType] = {_CODE: pa.int16(), _KEY_HASH: pa.int64()}
        mappings = []
        for code, schema in enumerate(targets):
            mapping: dict[str, str] = {}
            for field in schema or ():
                column = field.name
                if types.get(column, field.type) != field.type or column in (_CODE, _KEY_HASH):
                    column = f"{code}.{field.name}"
                types.setdefault(column, field.type)
                mapping[column] = field.name
            mappings.append(mapping)
        return UnionLayout(views, pa.schema(list(types.items())), tuple(mappings), tuple(targets))

    def to_union(self, code: int, table: pa.Table) -> pa.Table:
        """Rows of ``code`` as union rows."""
        rows = table.num_rows
        count = len(self.views)
        if code < count:
            key_hash = pa.array(partition_ids(table, list(self.views[code].combine.keys), _HASH_RANGE))
        else:
            key_hash = pa.array(np.zeros(rows, dtype=np.int64))
        columns = {_CODE: pa.repeat(pa.scalar(code, pa.int16()), rows), _KEY_HASH: key_hash}
        mapping = self.mappings[code]
        for field in self.schema:
            if field.name not in columns:
                source = mapping.get(field.name)
                columns[field.name] = (pc.cast(table.column(source), field.type) if source is not None
                                       else pa.nulls(rows, field.type))
        return pa.table(columns, schema=self.schema)

    def from_union(self, code: int, table: pa.Table) -> pa.Table:
        """The rows of ``code`` in ``table``, with their own column names and types."""
        rows = table.filter(pc.equal(table.column(_CODE), code))
        target = self.targets[code]
        assert target is not None
        by_name = {name: column for column, name in self.mappings[code].items()}
        return pa.table({field.name: rows.column(by_name[field.name]) for field in target}).cast(target)


@dataclass(frozen=True)
class MapViews:
    """MapReduce map: a batch of stored events -> the union rows of every view's partials."""

    layout: UnionLayout

    def __call__(self, events: pa.Table) -> pa.Table:
        return pa.concat_tables([self.layout.to_union(code, speed_partials(view, events))
                                 for code, view in enumerate(self.layout.views)])


@dataclass(frozen=True)
class MergeViews:
    """MapReduce combine (``finalize=False``) and reduce (``True``): merge each view's
    partials with its combiner; the reduce finalizes batch-only views."""

    layout: UnionLayout
    finalize: bool

    def __call__(self, table: pa.Table) -> pa.Table:
        count = len(self.layout.views)
        merged = []
        for code, view in enumerate(self.layout.views):
            rows = self.layout.from_union(code, table)
            if rows.num_rows == 0:
                continue
            if self.finalize and view.batch_only:
                merged.append(self.layout.to_union(count + code, view.combine.finalize([rows])))
            else:
                merged.append(self.layout.to_union(code, view.combine.merge_partials([rows])))
        return pa.concat_tables(merged) if merged else self.layout.schema.empty_table()


def _read_columns(spec: LambdaArchitecture) -> list[str] | None:
    if any(view.columns is None for view in spec.views):
        return None
    wanted = {column for view in spec.views for column in view.columns or ()}
    return [name for name in spec.contract.log_schema.names if name in wanted]


def compute_batch_views(log: MasterLog, spec: LambdaArchitecture, version: int, executor: str,
                        schemas: tuple[dict[str, pa.Schema], dict[str, pa.Schema]]) -> BatchViews:
    """Run the batch job over offsets ``[0, version)`` and write the version to disk."""
    from engine.io.sources import TableSource
    from engine.mapreduce.spec import JobOptions, MapReduceJob
    from engine.runtime.run import run

    started = time.perf_counter()
    target = log.directory / "views" / _VERSION_DIR.format(version)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    if any(segment.end > version for segment in log.segments(0, version)):
        raise ValueError(f"batch view version {version} is not at a segment boundary")
    partial, stored = schemas
    layout = UnionLayout.build(spec.views, partial, stored)
    options = spec.options
    events = call_at_lower_priority(options.batch_nice, _read_events, log, version, spec)
    if events is not None:
        job = MapReduceJob(
            name="lambda-batch-views", source=TableSource(events, batch_rows=1_000_000),
            map=MapViews(layout), combine=MergeViews(layout, finalize=False), reduce=MergeViews(layout, finalize=True),
            keys=[_CODE, _KEY_HASH], reducers=options.batch_reducers, output=str(target / "all"),
            options=JobOptions(workers=options.batch_workers, overwrite=True, backup_master=False, speculation=False,
                               max_bad_record_fraction=0.0, nice=options.batch_nice))
        union = run(job, executor).result().table()
    else:
        union = layout.schema.empty_table()
    count = len(spec.views)
    views = {view.name: layout.from_union(count + code if view.batch_only else code, union)
             for code, view in enumerate(spec.views)}
    for name, table in views.items():
        write_parquet_atomically(target / f"{name}.parquet", table)
    shutil.rmtree(target / "all", ignore_errors=True)
    elapsed = time.perf_counter() - started
    write_json_atomically(target / "manifest.json", {"version": version, "views": sorted(views),
                                                     "elapsed_s": elapsed, "created_unix": time.time()})
    return BatchViews(version, views, elapsed)


def commit_current(directory: Path, version: int) -> None:
    """Make batch view ``version`` the one a reopened directory serves; prune older ones."""
    views = directory / "views"
    write_json_atomically(views / "CURRENT.json", {"version": version})
    for old in views.glob("batch-*"):
        if old.name != _VERSION_DIR.format(version):
            shutil.rmtree(old, ignore_errors=True)


def empty_batch_views(stored: dict[str, pa.Schema]) -> BatchViews:
    """The batch view of the empty log prefix (version 0)."""
    return BatchViews(0, {name: schema.empty_table() for name, schema in stored.items()})


def load_current(directory: Path, stored: dict[str, pa.Schema]) -> BatchViews:
    """The committed batch view of ``directory``: the empty view when there is none, or
    when it was computed for other views (the speed layer then covers the whole log)."""
    pointer = directory / "views" / "CURRENT.json"
    if not pointer.exists():
        return empty_batch_views(stored)
    version = int(json.loads(pointer.read_text())["version"])
    target = directory / "views" / _VERSION_DIR.format(version)
    manifest = target / "manifest.json"
    if not manifest.exists():
        raise RuntimeError(f"batch view {target} named by {pointer} is incomplete (no manifest.json)")
    if sorted(json.loads(manifest.read_text()).get("views", [])) != sorted(stored):
        return empty_batch_views(stored)
    tables = {}
    for name, schema in stored.items():
        table = pq.read_table(target / f"{name}.parquet")
        try:
            tables[name] = table.select(schema.names).cast(schema)
        except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return empty_batch_views(stored)  # the view's shape changed since: recompute it
    return BatchViews(version, tables)
