"""The speed layer: a pipeline from the log's live feed to the real-time view shards.

Each acknowledged ingest batch (stored rows with offsets) is pushed, in log order, into a
``LiveFeed``.  One pipeline stage, :class:`SpeedStage`, turns it into its real-time delta:
per view (batch-only views excepted) the partials ``combine.to_partial(map(events))``,
split by the view's shard key and encoded as Arrow IPC, one row per (view, shard).
The pipeline delivers deltas in log order (``ordered=True``) to a callback sink,
:class:`DeltaApplier`, which applies each shard's part to that shard and then
*publishes* the batch's end offset ``H``: a query uses only published offsets, so it
never sees a batch applied to some shards and not to others.

``InlineSpeedLayer`` applies the same stage function synchronously (the inline
executor); ``PipelineSpeedLayer`` runs it as ``engine.run(Pipeline(...), "ray")``.
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

from engine.common.bad_records import describe_error
from engine.common.hashing import hash_partition
from engine.common.wire import encode_table
from engine.lambda_arch.errors import SpeedLayerDownError, SpeedLayerError
from engine.lambda_arch.spec import View

STAGE_ID = "speed-delta"
DELTA_SCHEMA = pa.schema([("view", pa.string()), ("shard", pa.int32()), ("begin", pa.int64()), ("end", pa.int64()),
                          ("rows", pa.binary()), ("error", pa.string())])


def encode_rows(table: pa.Table) -> bytes:
    """A table as Arrow IPC stream bytes (decoded by ``shard.decode_rows``)."""
    return encode_table(table).to_pybytes()


def view_input(view: View, events: pa.Table) -> pa.Table:
    """The event columns ``view.map`` reads (the same in the batch and the speed layer)."""
    return events.select(list(view.columns)) if view.columns is not None else events


def speed_partials(view: View, events: pa.Table) -> pa.Table:
    """The real-time partials of one view for a batch of stored events."""
    return view.combine.to_partial(view.map(view_input(view, events)))


@dataclass(frozen=True)
class SpeedStage:
    """Pipeline filter: stored events (with ``offset``) -> one delta table (``DELTA_SCHEMA``).

    Always returns the marker row (``view`` empty), so every batch reaches the sink and
    advances ``H``.  A view function that raises gives an ``error`` row instead (the
    batch is not split into bad rows: the rows are valid events, the view is at fault).
    """

    views: tuple[View, ...]
    shards: int

    def __call__(self, events: pa.Table) -> pa.Table:
        offsets = events.column("offset")
        begin, end = int(pc.min(offsets).as_py()), int(pc.max(offsets).as_py()) + 1
        entries: list[tuple[str, int, bytes | None, str | None]] = [("", -1, None, None)]  # the marker
        for view in self.views:
            try:
                parts = hash_partition(speed_partials(view, events), list(view.shard_by), self.shards)
            except Exception as error:
                entries.append((view.name, -1, None, describe_error(error).one_line()))
                continue
            entries += [(view.name, shard, encode_rows(part), None) for shard, part in enumerate(parts) if part.num_rows]
        views, shards, payloads, errors = zip(*entries)
        count = len(entries)
        return pa.table({"view": list(views), "shard": pa.array(shards, pa.int32()),
                         "begin": pa.repeat(pa.scalar(begin, pa.int64()), count),
                         "end": pa.repeat(pa.scalar(end, pa.int64()), count),
                         "rows": pa.array(payloads, pa.binary()), "error": list(errors)}, schema=DELTA_SCHEMA)


def split_delta(delta: pa.Table, shards: int) -> tuple[int, int, list[dict[str, bytes]]]:
    """(begin, end, per shard {view: IPC rows}) of one delta; raises ``SpeedLayerError``
    for a delta that carries a view's error."""
    begin, end = int(delta.column("begin")[0].as_py()), int(delta.column("end")[0].as_py())
    parts: list[dict[str, bytes]] = [{} for _ in range(shards)]
    for row in delta.select(["view", "shard", "rows", "error"]).to_pylist():  # one row per (view, shard)
        if row["error"] is not None:
            raise SpeedLayerError(f"view {row['view']!r} failed on log offsets [{begin}, {end}): {row['error']}")
        if row["shard"] >= 0:
            parts[row["shard"]][row["view"]] = row["rows"]
    return begin, end, parts


class Freshness:
    """Ack-to-visible latencies: ``acked(end)`` at ingest, ``published(H)`` when visible."""

    def __init__(self, keep: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._pending: deque[tuple[int, float]] = deque()
        self.latencies_s: deque[float] = deque(maxlen=keep)
        self.visible_events = 0

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


ApplyToShards = Callable[[int, int, Sequence[dict[str, bytes]]], None]


class DeltaApplier:
    """Callback sink: applies each delta to the shards, then publishes its end offset.

    ``apply_to_shards(begin, end, parts)`` performs the shard updates and returns when
    every shard has applied them.  A view error is remembered in ``error`` and raised.
    """

    def __init__(self, shards: int, apply_to_shards: ApplyToShards, publish: Callable[[int], None],
                 freshness: Freshness) -> None:
        self.shards = shards
        self.apply_to_shards = apply_to_shards
        self.publish = publish
        self.freshness = freshness
        self.error: SpeedLayerError | None = None

    def __call__(self, delta: pa.Table) -> None:
        try:
            begin, end, parts = split_delta(delta, self.shards)
        except SpeedLayerError as error:
            self.error = error
            raise
        self.apply_to_shards(begin, end, parts)
        self.publish(end)
        self.freshness.published(end, end - begin)


class InlineSpeedLayer:
    """The speed layer run synchronously in this process: ``push`` applies at once."""

    def __init__(self, stage: SpeedStage, applier: DeltaApplier) -> None:
        self.stage = stage
        self.applier = applier

    def push(self, stored: pa.Table) -> None:
        """Apply one acknowledged batch (never empty) to the real-time views now."""
        self.applier(self.stage(stored))

    def running(self) -> bool:
        """Always: nothing runs in the background inline."""
        return True

    def replica_actors(self) -> list[object]:
        """No actors inline."""
        return []

    def close(self, abandon: bool = False) -> None:
        """Nothing to stop."""


class PipelineSpeedLayer:
    """The speed layer as an ``engine.pipeline`` pipeline on Ray (live feed -> stage -> sink)."""

    def __init__(self, stage: SpeedStage, applier: DeltaApplier, replicas: int = 1, feed_capacity: int = 8) -> None:
        from engine.io.sinks import CallbackSink
        from engine.io.sources import LiveFeed
        from engine.pipeline.spec import Pipeline, PipelineOptions, Stage
        from engine.runtime.run import run

        self.applier = applier
        self.feed = LiveFeed(capacity=feed_capacity)
        pipeline = Pipeline(source=self.feed,
                            stages=(Stage(id=STAGE_ID, fn=stage, replicas=replicas, pipe_capacity=feed_capacity),),
                            sink=CallbackSink(applier), options=PipelineOptions(ordered=True))
        self.handle = run(pipeline, "ray")

    def push(self, stored: pa.Table) -> None:
        """Hand one acknowledged batch to the pipeline (blocks while the feed is full).

        Raises :class:`SpeedLayerDownError` when the pipeline has stopped (a crashed sink or
        shard), instead of blocking forever on a feed nobody reads.
        """
        while True:
            if self.handle.done():
                raise SpeedLayerDownError("the speed-layer pipeline has stopped")
            try:
                self.feed.push(stored, timeout_s=0.5)
                return
            except queue.Full:
                continue

    def running(self) -> bool:
        """False once the pipeline has stopped."""
        return not self.handle.done()

    def replica_actors(self) -> list[object]:
        """The stage's live replica actors (for inspection and fault injection)."""
        return self.handle.replica_actors(STAGE_ID)

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
