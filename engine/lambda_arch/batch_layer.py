"""The batch layer: recompute the batch views from the master log up to offset W.

One MapReduce job over the log segments below W (``TableSource``), run inline
(``engine.run(job, "inline")``) or on Ray (``engine.run(job, "ray")``), computes every view; its rows are
tagged with the view they belong to and keyed by (view, k1, k2):

- counts      (advertiser_id, minute): views and spend, combined map-side;
- viewers     (minute, user_id): distinct viewer pairs, combined map-side;
- attribution (user_id, advertiser_id): last-click attribution of purchases in reduce.

The ROI table is then derived from counts and attribution.  Views are written under
``<dir>/views/batch-<W>/`` (``counts``, ``viewers``, ``roi`` Parquet files and a
``manifest.json``); ``views/CURRENT.json`` is switched to the new version last, so a
reopened directory always finds a complete view.  Nothing is pickled: JSON and Parquet.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.lambda_arch.log import MasterLog
from engine.lambda_arch.views import (ATTRIBUTION_SCHEMA, COUNTS, COUNTS_SCHEMA, ROI_SCHEMA, TOUCHES_SCHEMA, VIEWERS,
                                      VIEWERS_SCHEMA, attribute, count_partials, roi_table, touch_rows,
                                      viewer_partials)
from engine.common.atomic_files import write_json_atomically, write_parquet_atomically

_VIEW_DIR = "batch-{:016d}"


@dataclass(frozen=True)
class BatchViews:
    """A complete batch view covering log offsets ``[0, version)``."""

    version: int
    counts: pa.Table       # COUNTS_SCHEMA
    viewers: pa.Table      # VIEWERS_SCHEMA
    roi: pa.Table          # ROI_SCHEMA
    elapsed_s: float = 0.0

    @staticmethod
    def empty() -> "BatchViews":
        """The view of the empty log."""
        return BatchViews(0, COUNTS_SCHEMA.empty_table(), VIEWERS_SCHEMA.empty_table(), ROI_SCHEMA.empty_table())


# One MapReduce job computes every view: map emits rows tagged with the view they belong
# to, keyed by (view, k1, k2); combine and reduce treat each view's rows with that view's
# function.  One job instead of three reads the log once and pays job start-up once.
UNION_SCHEMA = pa.schema([("view", pa.int8()), ("k1", pa.int64()), ("k2", pa.int64()), ("views", pa.int64()),
                          ("spend", pa.float64()), ("time_ms", pa.int64()), ("is_click", pa.bool_()),
                          ("revenue", pa.float64())])
COUNTS_VIEW, VIEWERS_VIEW, TOUCHES_VIEW, ATTRIBUTED_VIEW = 0, 1, 2, 3
_AS_UNION = {
    COUNTS_VIEW: {"k1": "advertiser_id", "k2": "minute", "views": "views", "spend": "spend"},
    VIEWERS_VIEW: {"k1": "minute", "k2": "user_id"},
    TOUCHES_VIEW: {"k1": "user_id", "k2": "advertiser_id", "time_ms": "time_ms", "is_click": "is_click",
                   "revenue": "revenue"},
    ATTRIBUTED_VIEW: {"k1": "user_id", "k2": "advertiser_id", "revenue": "attributed_revenue"},
}


def _to_union(view: int, table: pa.Table) -> pa.Table:
    rows = table.num_rows
    mapping = _AS_UNION[view]
    columns = {"view": pa.repeat(pa.scalar(view, pa.int8()), rows)}
    for field in UNION_SCHEMA:
        if field.name != "view":
            source = mapping.get(field.name)
            columns[field.name] = table.column(source) if source else pa.nulls(rows, field.type)
    return pa.table(columns, schema=UNION_SCHEMA)


def _from_union(view: int, table: pa.Table) -> pa.Table:
    rows = table.filter(pc.equal(table.column("view"), view))
    return pa.table({target: rows.column(source) for source, target in _AS_UNION[view].items()})


def map_all_views(events: pa.Table) -> pa.Table:
    """Map: a batch of stored events -> tagged partials of every view."""
    return pa.concat_tables([_to_union(COUNTS_VIEW, count_partials(events)),
                             _to_union(VIEWERS_VIEW, viewer_partials(events)),
                             _to_union(TOUCHES_VIEW, touch_rows(events))])


def combine_all_views(table: pa.Table) -> pa.Table:
    """Combine: sum counts, distinct viewer pairs; touches pass through."""
    return pa.concat_tables([_to_union(COUNTS_VIEW, COUNTS(_from_union(COUNTS_VIEW, table).cast(COUNTS_SCHEMA))),
                             _to_union(VIEWERS_VIEW, VIEWERS(_from_union(VIEWERS_VIEW, table))),
                             table.filter(pc.equal(table.column("view"), TOUCHES_VIEW))])


def reduce_all_views(table: pa.Table) -> pa.Table:
    """Reduce: final counts and viewer pairs, and attributed revenue per (user, advertiser)."""
    touches = _from_union(TOUCHES_VIEW, table).cast(TOUCHES_SCHEMA)
    return pa.concat_tables([_to_union(COUNTS_VIEW, COUNTS(_from_union(COUNTS_VIEW, table).cast(COUNTS_SCHEMA))),
                             _to_union(VIEWERS_VIEW, VIEWERS(_from_union(VIEWERS_VIEW, table))),
                             _to_union(ATTRIBUTED_VIEW, attribute(touches))])


def _run(job: object, executor: str) -> pa.Table:
    from engine.runtime.run import run

    return run(job, executor).result().table()


def compute_batch_views(log: MasterLog, version: int, executor: str = "inline", reducers: int = 4,
                        workers: int | None = None) -> BatchViews:
    """Run the batch job over offsets ``[0, version)`` and write the view to disk."""
    import engine

    started = time.perf_counter()
    target = log.directory / "views" / _VIEW_DIR.format(version)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    segments = log.segments(0, version)
    if any(segment.end > version for segment in segments):
        raise ValueError(f"batch view version {version} is not at a segment boundary")
    tables = list(log.iter_tables(0, version, ["event_time", "event_type", "user_id", "advertiser_id",
                                                 "cost", "revenue"]))
    if tables:
        job = engine.MapReduceJob(
            name="lambda-batch-views", source=engine.TableSource(pa.concat_tables(tables), batch_rows=1_000_000), map=map_all_views,
            combine=combine_all_views, reduce=reduce_all_views, keys=["view", "k1", "k2"], reducers=reducers,
            output=str(target / "all"),
            options=engine.JobOptions(workers=workers, overwrite=True, backup_master=False, speculation=False))
        result = _run(job, executor)
        counts = _from_union(COUNTS_VIEW, result).cast(COUNTS_SCHEMA)
        viewers = _from_union(VIEWERS_VIEW, result).cast(VIEWERS_SCHEMA)
        attribution = _from_union(ATTRIBUTED_VIEW, result).cast(ATTRIBUTION_SCHEMA)
    else:
        counts, viewers = COUNTS_SCHEMA.empty_table(), VIEWERS_SCHEMA.empty_table()
        attribution = ATTRIBUTION_SCHEMA.empty_table()
    roi = roi_table(counts, attribution)
    write_parquet_atomically(target / "counts.parquet", counts)
    write_parquet_atomically(target / "viewers.parquet", viewers)
    write_parquet_atomically(target / "roi.parquet", roi)
    shutil.rmtree(target / "all", ignore_errors=True)
    elapsed = time.perf_counter() - started
    write_json_atomically(target / "manifest.json", {"version": version, "events": version, "elapsed_s": elapsed,
                                                     "created_unix": time.time()})
    return BatchViews(version, counts, viewers, roi, elapsed)


def commit_current(directory: Path, version: int) -> None:
    """Make batch view ``version`` the one a reopened directory serves; prune older ones."""
    views = directory / "views"
    write_json_atomically(views / "CURRENT.json", {"version": version})
    for old in views.glob("batch-*"):
        if old.name != _VIEW_DIR.format(version):
            shutil.rmtree(old, ignore_errors=True)


def load_current(directory: Path) -> BatchViews:
    """The committed batch view of ``directory`` (the empty view when there is none)."""
    pointer = directory / "views" / "CURRENT.json"
    if not pointer.exists():
        return BatchViews.empty()
    version = int(json.loads(pointer.read_text())["version"])
    target = directory / "views" / _VIEW_DIR.format(version)
    if not (target / "manifest.json").exists():
        raise RuntimeError(f"batch view {target} named by {pointer} is incomplete (no manifest.json)")

    def read(name: str, schema: pa.Schema) -> pa.Table:
        return pq.read_table(target / name).select(schema.names).cast(schema)

    return BatchViews(version, read("counts.parquet", COUNTS_SCHEMA), read("viewers.parquet", VIEWERS_SCHEMA),
                      read("roi.parquet", ROI_SCHEMA))
