"""The speed layer: a pipeline from the log's live feed to the real-time view shards.

Each acknowledged ingest batch (stored rows with offsets) is pushed, in log order, to a
``LiveFeed``.  One pipeline stage, :class:`SpeedDelta`, turns the batch into its
real-time delta (views and spend per advertiser-minute, distinct viewer pairs), tagged
with the batch's offset range and each row's shard; the pipeline delivers deltas in log
order (``ordered=True``) to a callback sink, :class:`DeltaApplier`, which applies each
shard's part to that shard and then *publishes* the new high-water offset ``H``.  A query
uses only published offsets, so it never sees a delta applied to some shards and not
to others.

``InlineSpeedLayer`` runs the same stage function and applier synchronously, without
Ray (the oracle executor); ``PipelineSpeedLayer`` runs them as a pipeline on Ray.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.common.hashing import partition_ids
from engine.lambda_arch.views import COUNTS_SCHEMA, VIEWERS_SCHEMA, count_partials, viewer_partials

DELTA_SCHEMA = pa.schema([
    ("kind", pa.int8()),            # 0: offset marker, 1: counts row, 2: viewer row
    ("shard", pa.int32()),
    ("batch_begin", pa.int64()),
    ("batch_end", pa.int64()),
    ("advertiser_id", pa.int64()),
    ("minute", pa.int64()),
    ("user_id", pa.int64()),
    ("views", pa.int64()),
    ("spend", pa.float64()),
])
MARKER, COUNTS_ROW, VIEWER_ROW = 0, 1, 2


@dataclass(frozen=True)
class SpeedDelta:
    """Pipeline filter: stored events (with ``offset``) -> one delta table (``DELTA_SCHEMA``).

    Always returns at least the marker row, so every batch reaches the sink and advances
    the high-water offset even when it holds no views.
    """

    shards: int

    def __call__(self, events: pa.Table) -> pa.Table:
        offsets = events.column("offset")
        begin = int(pc.min(offsets).as_py())
        end = int(pc.max(offsets).as_py()) + 1
        counts = count_partials(events)
        viewers = viewer_partials(events)
        marker = _rows(MARKER, np.zeros(1, np.int32), begin, end, {})
        count_rows = _rows(COUNTS_ROW, partition_ids(counts, ["advertiser_id"], self.shards).astype(np.int32),
                           begin, end, {name: counts.column(name) for name in COUNTS_SCHEMA.names})
        viewer_rows = _rows(VIEWER_ROW, partition_ids(viewers, ["user_id"], self.shards).astype(np.int32),
                            begin, end, {name: viewers.column(name) for name in VIEWERS_SCHEMA.names})
        return pa.concat_tables([marker, count_rows, viewer_rows])


def _rows(kind: int, shard: np.ndarray, begin: int, end: int, columns: dict[str, pa.ChunkedArray]) -> pa.Table:
    count = len(shard)
    data = {"kind": pa.repeat(pa.scalar(kind, pa.int8()), count), "shard": pa.array(shard, pa.int32()),
            "batch_begin": pa.repeat(pa.scalar(begin, pa.int64()), count),
            "batch_end": pa.repeat(pa.scalar(end, pa.int64()), count)}
    for field in DELTA_SCHEMA:
        if field.name not in data:
            data[field.name] = columns.get(field.name, pa.nulls(count, field.type))
    return pa.table(data, schema=DELTA_SCHEMA)


def split_delta(delta: pa.Table, shards: int) -> tuple[int, int, list[tuple[pa.Table, pa.Table]]]:
    """(begin, end, per shard (counts, viewers)) of one delta table."""
    begin = int(delta.column("batch_begin")[0].as_py())
    end = int(delta.column("batch_end")[0].as_py())
    kind = delta.column("kind").to_numpy()
    shard = delta.column("shard").to_numpy()
    parts = []
    for index in range(shards):
        mine = shard == index
        counts = delta.filter(pa.array(mine & (kind == COUNTS_ROW))).select(COUNTS_SCHEMA.names)
        viewers = delta.filter(pa.array(mine & (kind == VIEWER_ROW))).select(VIEWERS_SCHEMA.names)
        parts.append((counts, viewers))
    return begin, end, parts


class SpeedLayerDown(RuntimeError):
    """The speed layer cannot take batches any more; rebuild it from the log."""


class Freshness:
    """Ack-to-visible latencies: ``acked(end)`` at ingest, ``published(H)`` when visible."""

    def __init__(self, keep: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._pending: deque[tuple[int, float]] = deque()
        self.latencies_s: deque[float] = deque(maxlen=keep)
        self.visible_events = 0
        self.started = time.perf_counter()

    def acked(self, end_offset: int) -> None:
        """An ingest covering offsets below ``end_offset`` was acknowledged now."""
        with self._lock:
            self._pending.append((end_offset, time.perf_counter()))

    def published(self, high_water: int, events: int) -> None:
        """Offsets below ``high_water`` became visible to queries now."""
        now = time.perf_counter()
        with self._lock:
            self.visible_events += events
            while self._pending and self._pending[0][0] <= high_water:
                self.latencies_s.append(now - self._pending.popleft()[1])

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) of ack-to-visible seconds, None before any."""
        with self._lock:
            values = list(self.latencies_s)
        return float(np.percentile(values, q)) if values else None


class DeltaApplier:
    """Callback sink: applies each delta to the shards, then publishes its end offset.

    ``apply_to_shards(begin, end, parts)`` performs the shard updates (in-process calls or
    Ray actor calls) and returns when every shard has applied them.
    """

    def __init__(self, shards: int, apply_to_shards: Callable[[int, int, Sequence[tuple[pa.Table, pa.Table]]], None],
                 publish: Callable[[int], None], freshness: Freshness) -> None:
        self.shards = shards
        self.apply_to_shards = apply_to_shards
        self.publish = publish
        self.freshness = freshness

    def __call__(self, delta: pa.Table) -> None:
        begin, end, parts = split_delta(delta, self.shards)
        self.apply_to_shards(begin, end, parts)
        self.publish(end)
        self.freshness.published(end, end - begin)


class InlineSpeedLayer:
    """The speed layer run synchronously in this process: ``push`` applies at once."""

    def __init__(self, stage: SpeedDelta, applier: DeltaApplier) -> None:
        self.stage = stage
        self.applier = applier

    def push(self, stored: pa.Table) -> None:
        """Apply one acknowledged batch (never empty) to the real-time view now."""
        self.applier(self.stage(stored))

    def drain(self, timeout_s: float = 0.0) -> None:
        """Nothing is ever in flight inline."""

    def close(self, abandon: bool = False) -> None:
        """Nothing to stop."""


class PipelineSpeedLayer:
    """The speed layer as an ``engine.pipeline`` pipeline on Ray (live feed -> stage -> sink)."""

    def __init__(self, stage: SpeedDelta, applier: DeltaApplier, replicas: int = 1, feed_capacity: int = 8) -> None:
        from engine.io.sinks import CallbackSink
        from engine.io.sources import LiveFeed
        from engine.pipeline.spec import Pipeline, PipelineOptions, Stage

        self.applier = applier
        self.feed = LiveFeed(capacity=feed_capacity)
        self.pipeline = Pipeline(
            source=self.feed,
            stages=(Stage(id="speed-delta", fn=stage, replicas=replicas, pipe_capacity=feed_capacity),),
            sink=CallbackSink(applier),
            options=PipelineOptions(ordered=True),
        )
        from engine.runtime.run import run

        self.handle = run(self.pipeline, "ray")
        self._pushed_end = 0

    def push(self, stored: pa.Table) -> None:
        """Hand one acknowledged batch to the pipeline (blocks while the feed is full).

        Raises :class:`SpeedLayerDown` when the pipeline has stopped (a crashed sink or
        shard), instead of blocking forever on a feed nobody reads.
        """
        while True:
            if self.handle.done():
                raise SpeedLayerDown("the speed-layer pipeline has stopped")
            try:
                self.feed.push(stored, timeout_s=0.5)
                return
            except queue.Full:
                continue

    def drain(self, timeout_s: float = 30.0) -> None:
        """Not used: callers wait on the published offset instead."""

    def close(self, abandon: bool = False) -> None:
        """End the feed and wait for the pipeline to deliver what it holds; ``abandon``
        (a broken layer being replaced) cancels it instead."""
        self.feed.close()
        try:
            if abandon:
                self.handle.cancel()
            else:
                self.handle.result()
        except Exception:  # a crashed pipeline has nothing left to deliver
            pass
