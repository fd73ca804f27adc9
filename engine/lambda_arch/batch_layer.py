"""The batch layer: recompute the batch views from the master log up to offset W.

Three MapReduce jobs over the log segments below W (``TableInput``, one split per
segment), run inline (``engine.run_local``) or on Ray (``engine.submit``):

- ``counts``      keys (advertiser_id, minute): views and spend, combined map-side;
- ``viewers``     keys (minute, user_id): distinct viewer pairs, combined map-side;
- ``attribution`` keys (user_id, advertiser_id): last-click attribution of purchases.

The ROI table is then derived from counts and attribution.  Views are written under
``<dir>/views/batch-<W>/`` (the jobs' Parquet outputs plus ``roi.parquet`` and a
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
import pyarrow.parquet as pq

from engine.lambda_arch.log import MasterLog
from engine.lambda_arch.views import (ATTRIBUTED, ATTRIBUTION_SCHEMA, COUNTS, COUNTS_SCHEMA, ROI_SCHEMA, VIEWERS,
                                      VIEWERS_SCHEMA, attribute, count_partials, roi_table, touch_rows,
                                      viewer_partials)
from engine.reliability.atomic_files import write_json_atomically

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


def _run(job: object, executor: str) -> pa.Table:
    import engine

    if executor == "local":
        return engine.run_local(job).table()
    if executor == "ray":
        return engine.submit(job).result().table()
    raise ValueError(f"unknown batch executor {executor!r}; choose 'local' or 'ray'")


def _job(name: str, tables: list[pa.Table], map_fn: object, reduce_fn: object, keys: list[str],
         combine: object | None, output: Path, reducers: int) -> object:
    import engine

    return engine.MapReduceJob(name=name, inputs=engine.TableInput(tables), map=map_fn, combine=combine,
                               reduce=reduce_fn, keys=keys, reducers=reducers, output=str(output),
                               options=engine.JobOptions(overwrite=True, backup_master=False, speculation=False))


def compute_batch_views(log: MasterLog, version: int, executor: str = "local", reducers: int = 4) -> BatchViews:
    """Run the batch jobs over offsets ``[0, version)`` and write the view to disk."""
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
        counts = _run(_job("lambda-counts", tables, count_partials, COUNTS, ["advertiser_id", "minute"], COUNTS,
                           target / "counts", reducers), executor).cast(COUNTS_SCHEMA)
        viewers = _run(_job("lambda-viewers", tables, viewer_partials, VIEWERS, ["minute", "user_id"], VIEWERS,
                            target / "viewers", reducers), executor).cast(VIEWERS_SCHEMA)
        attribution = _run(_job("lambda-attribution", tables, touch_rows, attribute, ["user_id", "advertiser_id"],
                                None, target / "attribution", reducers), executor)
        attribution = attribution.select(ATTRIBUTION_SCHEMA.names).cast(ATTRIBUTION_SCHEMA)
    else:
        counts, viewers = COUNTS_SCHEMA.empty_table(), VIEWERS_SCHEMA.empty_table()
        attribution = ATTRIBUTION_SCHEMA.empty_table()
    roi = roi_table(counts, attribution)
    pq.write_table(roi, target / "roi.parquet")
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
        path = target / name
        files = sorted(path.glob("part-*.parquet")) if path.is_dir() else []
        tables = [pq.read_table(file) for file in files]
        return pa.concat_tables(tables).select(schema.names).cast(schema) if tables else schema.empty_table()

    return BatchViews(version, read("counts", COUNTS_SCHEMA), read("viewers", VIEWERS_SCHEMA),
                      pq.read_table(target / "roi.parquet").cast(ROI_SCHEMA))
