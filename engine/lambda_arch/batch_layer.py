"""The batch layer: every view recomputed from the master log up to offset W, by MapReduce.

One MapReduce job per view over the log's segment files below W (``engine.run(job,
"inline" | "ray")``): each map task reads one segment file itself (the driver never
holds the events) and emits the view's partials; the shuffle key is the view's combine
keys, so every key meets in one reducer, which merges its partials with the view's
combiner (and finalizes a batch-only view).  A job per view keeps each shuffle in the
view's own columns: no padding of one view's rows with another's columns, no view tag
to filter on.

A version is written under ``<dir>/views/batch-<W>/`` (per view the directory of Parquet
parts its job committed, and a ``manifest.json``, each written atomically); ``views/CURRENT.json`` is switched to it
last (blue-green), so a reopened directory always finds a complete version.  Nothing is
pickled: JSON and Parquet.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from engine.common.atomic_files import write_json_atomically, write_parquet_atomically
from engine.errors import SpecError
from engine.lambda_arch.log import MasterLog, Segment
from engine.lambda_arch.segment_source import SegmentSource
from engine.lambda_arch.spec import LambdaArchitecture, View
from engine.lambda_arch.speed_layer import speed_partials

if TYPE_CHECKING:
    from engine.mapreduce.spec import MapReduceJob

_VERSION_DIR = "batch-{:016d}"
_SPLITS_PER_WORKER = 2  # map tasks per worker: few (each has a fixed cost), but balanced
_MIN_SPLIT_ROWS = 250_000


@dataclass(frozen=True)
class BatchViews:
    """A complete batch view covering log offsets ``[0, version)``: per view its table
    (partials; finalized rows for a batch-only view)."""

    version: int
    tables: dict[str, pa.Table]
    elapsed_s: float = 0.0


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
class ViewPartials:
    """MapReduce map of a view's batch job: a batch of stored events -> the view's partials."""

    view: View

    def __call__(self, events: pa.Table) -> pa.Table:
        return speed_partials(self.view, events)


@dataclass(frozen=True)
class FinishView:
    """MapReduce reduce of a view's batch job: a key range's partials merged with the
    view's combiner (finalized, for a batch-only view) and cast to its stored ``schema``."""

    view: View
    schema: pa.Schema

    def __call__(self, partials: pa.Table) -> pa.Table:
        combine = self.view.combine
        table = combine.finalize([partials]) if self.view.batch_only else combine.merge_partials([partials])
        return table.cast(self.schema)


def _view_columns(view: View, spec: LambdaArchitecture) -> list[str] | None:
    if view.columns is None:
        return None
    return [name for name in spec.contract.log_schema.names if name in view.columns]


def view_job(view: View, spec: LambdaArchitecture, segments: list[Segment], stored: pa.Schema, output: Path,
             workers: int) -> "MapReduceJob":
    """The MapReduce job computing ``view`` from ``segments`` into ``output`` (a directory of
    Parquet parts).  The segments are cut into ``_SPLITS_PER_WORKER`` map tasks per worker
    of about the same number of events (at least ``_MIN_SPLIT_ROWS``); a map task's events
    are one batch, whose partials are already merged per key, so there is no map-side
    combine to repeat that."""
    from engine.mapreduce.spec import JobOptions, MapReduceJob

    options = spec.options
    events = sum(segment.rows for segment in segments)
    split_rows = max(_MIN_SPLIT_ROWS, -(-events // (workers * _SPLITS_PER_WORKER)))
    source = SegmentSource(segments, spec.contract.log_schema, _view_columns(view, spec), split_rows)
    return MapReduceJob(
        name=f"lambda-batch-{view.name}", source=source, map=ViewPartials(view), reduce=FinishView(view, stored),
        keys=list(view.combine.keys), reducers=options.batch_reducers, output=str(output),
        options=JobOptions(workers=options.batch_workers, overwrite=True, backup_master=False, speculation=False,
                           max_bad_record_fraction=0.0, nice=options.batch_nice))


def compute_batch_views(log: MasterLog, spec: LambdaArchitecture, version: int, executor: str,
                        schemas: tuple[dict[str, pa.Schema], dict[str, pa.Schema]]) -> BatchViews:
    """Run the views' batch jobs over offsets ``[0, version)`` and write the version to disk."""
    from engine.cluster import available_cpus
    from engine.runtime.run import run

    started = time.perf_counter()
    target = log.directory / "views" / _VERSION_DIR.format(version)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    segments = log.segments(0, version)
    if any(segment.end > version for segment in segments):
        raise ValueError(f"batch view version {version} is not at a segment boundary")
    _partial, stored = schemas
    workers = spec.options.batch_workers or (1 if executor == "inline" else available_cpus())
    views: dict[str, pa.Table] = {}
    read_back: dict[str, Future] = {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-read-back") as reader:
        for view in spec.views:  # one job after another: each already uses every worker
            if segments:
                job = view_job(view, spec, segments, stored[view.name], target / view.name, workers)
                result = run(job, executor).result()
                # The committed parts are read back while the next view's job runs.
                read_back[view.name] = reader.submit(lambda r=result, s=stored[view.name]: r.table().cast(s))
            else:
                views[view.name] = stored[view.name].empty_table()
                (target / view.name).mkdir()
                write_parquet_atomically(target / view.name / "part-00000.parquet", views[view.name])
        views.update({name: future.result() for name, future in read_back.items()})
    views = {view.name: views[view.name] for view in spec.views}
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
        single = target / f"{name}.parquet"  # how versions written before view parts were stored
        parts = [single] if single.exists() else sorted((target / name).glob("part-*.parquet"))
        if not parts:
            raise RuntimeError(f"batch view {target} named by {pointer} has no parts for view {name!r}")
        table = pa.concat_tables([pq.read_table(part) for part in parts])
        try:
            tables[name] = table.select(schema.names).cast(schema)
        except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return empty_batch_views(stored)  # the view's shape changed since: recompute it
    return BatchViews(version, tables)
