"""The Lambda architecture, assembled: master log + batch, speed and serving layers.

    lam = LambdaArchitecture("/data/adtech", LambdaOptions(executor="ray"))
    ack = lam.ingest(events)                  # durable, de-duplicated, acknowledged
    lam.recompute_batch()                     # batch views up to the log's end (MapReduce)
    lam.ads_shown(hours=24).value             # batch view + real-time view, merged
    lam.close()                               # reopening the directory continues from it

``executor="inline"`` runs every layer inline in this process (no Ray): the speed layer
applies each batch synchronously, the batch jobs run inline and the
serving layer loops over in-process shards.  ``executor="ray"`` runs the speed layer as
an ``engine.pipeline`` pipeline, the batch jobs on Ray and the view
shards as actors queried with ``engine.scatter_gather``.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from engine.common.hashing import partition_ids
from engine.lambda_arch.batch_layer import BatchViews, commit_current, compute_batch_views, load_current
from engine.lambda_arch.log import IngestAck, MasterLog
from engine.lambda_arch.serving import Answer, ServingLayer, inline_gather, ray_gather
from engine.lambda_arch.shard import SHARD_ROI_SCHEMA, BatchPartition, ViewShard
from engine.lambda_arch.speed_layer import (DeltaApplier, Freshness, InlineSpeedLayer, PipelineSpeedLayer,
                                            SpeedDelta, SpeedLayerDown)
from engine.lambda_arch.views import window_minutes

EXECUTORS = ("inline", "ray")


@dataclass(frozen=True)
class LambdaOptions:
    """Settings of a Lambda deployment.

    - ``executor``: ``"ray"`` (pipeline, MapReduce on Ray, shard actors) or ``"inline"``.
    - ``batch_executor``: executor of the batch layer's MapReduce jobs (``"inline"`` or
      ``"ray"``); ``None`` follows ``executor``.
    - ``shards``: view shards (advertisers and users are hash-partitioned over them).
    - ``dedup_horizon_hours``: a re-sent ``event_id`` is dropped while its stored copy is
      within this much event time of the newest event stored (see ``dedup.py``).
    - ``batch_reducers``: reduce partitions of the batch jobs.
    - ``batch_workers``: MapReduce workers of a batch run (``None``: one per CPU); fewer
      leave CPU to ingest and the speed layer while the batch layer recomputes.
    - ``speed_replicas``: replica actors of the speed-layer stage.
    - ``feed_capacity``: batches the speed layer's live feed holds before ingest blocks.
    - ``query_deadline_s`` / ``query_retries``: per scatter-gather deadline and retries.
    """

    executor: str = "ray"
    batch_executor: str | None = None
    shards: int = 2
    dedup_horizon_hours: float = 24.0
    batch_reducers: int = 4
    batch_workers: int | None = None
    speed_replicas: int = 1
    feed_capacity: int = 8
    query_deadline_s: float = 5.0
    query_retries: int = 40

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.batch_executor not in (None,) + EXECUTORS:
            raise ValueError(f"batch_executor must be None or one of {EXECUTORS}, got {self.batch_executor!r}")
        for name in ("shards", "batch_reducers", "speed_replicas", "feed_capacity", "query_retries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dedup_horizon_hours < 0:
            raise ValueError(f"dedup_horizon_hours must be >= 0, got {self.dedup_horizon_hours}")
        if self.query_deadline_s <= 0:
            raise ValueError(f"query_deadline_s must be > 0, got {self.query_deadline_s}")


def partition_views(views: BatchViews, shards: int) -> list[BatchPartition]:
    """Split a batch view into per-shard partitions (advertisers and users by stable hash)."""
    count_ids = partition_ids(views.counts, ["advertiser_id"], shards)
    viewer_ids = partition_ids(views.viewers, ["user_id"], shards)
    roi = views.roi.select(SHARD_ROI_SCHEMA.names)
    roi_ids = partition_ids(roi, ["advertiser_id"], shards)
    return [BatchPartition(views.version, views.counts.filter(pa.array(count_ids == index)),
                           views.viewers.filter(pa.array(viewer_ids == index)), roi.filter(pa.array(roi_ids == index)))
            for index in range(shards)]


def _as_ms(moment: datetime | int | None, default: int) -> int:
    if moment is None:
        return default
    if isinstance(moment, datetime):
        return int(moment.timestamp() * 1000)
    return int(moment)


class LambdaArchitecture:
    """Ingest, batch recomputation, real-time views and queries over one directory."""

    def __init__(self, directory: str | Path, options: LambdaOptions | None = None) -> None:
        self.options = options or LambdaOptions()
        self.options.validate()
        self.directory = Path(directory)
        self.log = MasterLog(self.directory, int(self.options.dedup_horizon_hours * 3_600_000))
        self.freshness = Freshness()
        self._ingest_lock = threading.RLock()
        self._speed_broken = threading.Event()
        self._batch_lock = threading.Lock()
        self._schedule_stop = threading.Event()
        self._schedule_thread: threading.Thread | None = None
        self.batch_runs: list[dict[str, Any]] = []
        self._views = load_current(self.directory)
        # (end offset, newest event time stored) after each ingest: the default ``as_of``.
        self._watermarks: list[tuple[int, int]] = [(self.log.end_offset, self.latest_event_ms)]
        self.serving = ServingLayer(lambda request: [], self._views.version, self._views.version,
                                    self.options.query_retries)
        self._start_speed_layer()

    # -- speed layer lifecycle ---------------------------------------------------------

    def _start_speed_layer(self) -> None:
        """(Re)create the view shards and the speed pipeline, then replay the log from W."""
        shards = self.options.shards
        version = self._views.version
        self._speed_broken.clear()
        partitions = partition_views(self._views, shards)
        if self.options.executor == "inline":
            self._shards: list[Any] = [ViewShard(index, version) for index in range(shards)]
            for shard, partition in zip(self._shards, partitions):
                shard.load_batch(partition)
            gather = inline_gather(self._shards)
            apply_to_shards = self._apply_inline
        else:
            import ray

            actor_class = ray.remote(ViewShard).options(num_cpus=0, max_concurrency=8)
            self._shards = [actor_class.remote(index, version) for index in range(shards)]
            ray.get([shard.load_batch.remote(partition) for shard, partition in zip(self._shards, partitions)])
            gather = ray_gather(self._shards, self.options.query_deadline_s)
            apply_to_shards = self._apply_ray
        self.serving.set_gather(gather)
        self.serving.reset_speed(version)
        applier = DeltaApplier(shards, apply_to_shards, self.serving.publish_speed, self.freshness)
        stage = SpeedDelta(shards)
        if self.options.executor == "inline":
            self.speed: Any = InlineSpeedLayer(stage, applier)
        else:
            self.speed = PipelineSpeedLayer(stage, applier, self.options.speed_replicas, self.options.feed_capacity)
        for table in self.log.iter_tables(version, self.log.end_offset):
            self.speed.push(table)

    def _apply_inline(self, begin: int, end: int, parts: Any) -> None:
        for shard, (counts, viewers) in zip(self._shards, parts):
            shard.apply(begin, end, counts, viewers)

    def _apply_ray(self, begin: int, end: int, parts: Any) -> None:
        import ray

        shards = self._shards
        try:
            ray.get([shard.apply.remote(begin, end, counts, viewers) for shard, (counts, viewers) in zip(shards, parts)])
        except Exception:
            if shards is self._shards:
                self._speed_broken.set()  # a shard died: ingest and wait_visible rebuild from the log
            raise

    def rebuild_speed_layer(self) -> None:
        """Throw the real-time state away and rebuild it from the log (after a crash).

        Ingest waits meanwhile; queries keep being answered with the offsets they cover.
        """
        with self._ingest_lock, self._batch_lock:
            self._stop_speed_layer()
            self._start_speed_layer()

    def speed_layer_healthy(self, timeout_s: float = 5.0) -> bool:
        """True when every view shard answers and the speed pipeline is running."""
        if self.options.executor == "inline":
            return True
        import ray

        if self.speed.handle.done():
            return False
        try:
            ray.get([shard.status.remote() for shard in self._shards], timeout=timeout_s)
        except Exception:
            return False
        return True

    def heal(self) -> bool:
        """Rebuild the speed layer from the log if a shard or the pipeline died; True if rebuilt."""
        if self.speed_layer_healthy():
            return False
        self.rebuild_speed_layer()
        return True

    def _stop_speed_layer(self) -> None:
        try:
            self.speed.close(abandon=self._speed_broken.is_set() or not self.speed_layer_healthy(1.0))
        except Exception:
            pass
        if self.options.executor == "ray":
            import ray

            for shard in self._shards:
                ray.kill(shard)

    # -- ingest ------------------------------------------------------------------------

    def ingest(self, batch: pa.Table | pa.RecordBatch) -> IngestAck:
        """Durably append ``batch`` to the master log and feed it to the speed layer.

        If the speed layer has crashed, it is rebuilt from the log first (ingest waits).
        """
        with self._ingest_lock:
            ack, stored = self.log.ingest(batch)
            self.freshness.acked(ack.end_offset)
            if stored.num_rows:
                self._watermarks.append((ack.end_offset, self.latest_event_ms))
            if stored.num_rows:
                try:
                    if self._speed_broken.is_set():
                        raise SpeedLayerDown("a view shard died")
                    self.speed.push(stored)
                except SpeedLayerDown:
                    # The batch is durable in the log: the rebuild replays it with the rest.
                    self.rebuild_speed_layer()
        return ack

    def wait_visible(self, offset: int | None = None, timeout_s: float = 60.0) -> int:
        """Wait until queries cover offsets below ``offset`` (default: the log's end)."""
        target = self.log.end_offset if offset is None else offset
        deadline = time.monotonic() + timeout_s
        while self.serving.snapshot[1] < target:
            if self._speed_broken.is_set():
                self.rebuild_speed_layer()
            if time.monotonic() > deadline:
                raise TimeoutError(f"speed layer reached offset {self.serving.snapshot[1]}, not {target}, "
                                   f"within {timeout_s} s")
            time.sleep(0.002)
        return self.serving.snapshot[1]

    # -- batch layer -------------------------------------------------------------------

    def recompute_batch(self) -> int:
        """Recompute the batch views up to the log's current end, switch to them; returns W."""
        with self._batch_lock:
            version = self.log.end_offset
            if version == self._views.version:
                return version
            executor = self.options.batch_executor or self.options.executor
            views = compute_batch_views(self.log, version, executor, self.options.batch_reducers,
                                        self.options.batch_workers)
            self._install(views)
            self.batch_runs.append({"version": version, "elapsed_s": views.elapsed_s, "finished": time.time()})
            return version

    def _install(self, views: BatchViews) -> None:
        partitions = partition_views(views, self.options.shards)
        if self.options.executor == "inline":
            for shard, partition in zip(self._shards, partitions):
                shard.load_batch(partition)
        else:
            import ray

            ray.get([shard.load_batch.remote(partition) for shard, partition in zip(self._shards, partitions)])
        commit_current(self.directory, views.version)
        self.serving.switch_batch(views.version)
        self._views = views
        if self.options.executor == "inline":
            for shard in self._shards:
                shard.drop_below(views.version)
        else:
            import ray

            ray.get([shard.drop_below.remote(views.version) for shard in self._shards])

    def start_batch_schedule(self, every_s: float) -> None:
        """Recompute the batch views every ``every_s`` seconds in a background thread."""
        if every_s <= 0:
            raise ValueError(f"batch schedule interval must be > 0 s, got {every_s}")

        def loop() -> None:
            while not self._schedule_stop.wait(every_s):
                self.recompute_batch()

        self._schedule_stop.clear()
        self._schedule_thread = threading.Thread(target=loop, name="lambda-batch-schedule", daemon=True)
        self._schedule_thread.start()

    def stop_batch_schedule(self) -> None:
        """Stop the periodic recomputation (waits for a running one to finish)."""
        self._schedule_stop.set()
        if self._schedule_thread is not None:
            self._schedule_thread.join()
            self._schedule_thread = None

    # -- queries -----------------------------------------------------------------------

    @property
    def latest_event_ms(self) -> int:
        """The newest event time stored (the default ``as_of``); 0 for an empty log."""
        watermark = self.log.max_event_time_ms
        return watermark if watermark is not None else 0

    def visible_event_ms(self) -> int:
        """The newest event time among the offsets queries currently cover (default ``as_of``)."""
        covered = self.serving.snapshot[1]
        position = bisect.bisect_right(self._watermarks, (covered, np.iinfo(np.int64).max)) - 1
        return self._watermarks[max(0, position)][1]

    def active_viewers(self, as_of: datetime | int | None = None, minutes: int = 5) -> Answer:
        """Distinct users with a view in the last ``minutes`` minutes as of ``as_of``
        (default: the newest event time visible to queries)."""
        first, last = window_minutes(_as_ms(as_of, self.visible_event_ms()), minutes)
        return self.serving.active_viewers(first, last)

    def ads_shown(self, as_of: datetime | int | None = None, hours: float = 24, advertiser_id: int | None = None,
                  top_k: int = 0) -> Answer:
        """View events in the last ``hours`` as of ``as_of`` (default: the newest event time
        visible to queries); ``extra['top']`` holds the top-k advertisers."""
        first, last = window_minutes(_as_ms(as_of, self.visible_event_ms()), int(round(hours * 60)))
        return self.serving.ads_shown(first, last, advertiser_id, top_k)

    def roi(self, advertiser_id: int | None = None) -> Answer:
        """ROI from the batch view as of its W (``extra['table']`` per advertiser)."""
        return self.serving.roi(advertiser_id)

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop the schedule and the speed layer, release the directory."""
        self.stop_batch_schedule()
        with self._ingest_lock:
            self._stop_speed_layer()
            self.log.close()

    def __enter__(self) -> "LambdaArchitecture":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
