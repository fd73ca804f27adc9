"""One view shard: its partition of a batch view and of the real-time view, and queries.

A shard owns the advertisers with ``hash(advertiser_id) mod S == index`` (view counts,
spend, ROI) and the users with ``hash(user_id) mod S == index`` (distinct viewers), so
per-shard answers add up without double counting.  It holds:

- batch views by version ``W`` (the first offset *not* covered); two versions exist
  during a blue-green switch, the older is dropped once no snapshot uses it;
- real-time *chunks*, one per ingest batch ``[begin, end)`` applied in log order.

A query names a snapshot ``(W, H)``: it is answered from batch view ``W`` plus the chunks
with ``W <= begin`` and ``end <= H`` -- exactly the events with offsets below ``H``.
A shard that cannot answer a snapshot (view version gone, chunks not applied yet)
raises :class:`StaleSnapshotError` and the serving layer retries with a fresh snapshot.
The class is plain Python; the Ray executor wraps it in an actor.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.lambda_arch.views import COUNTS_SCHEMA, DISTINCT_USERS, VIEWERS_SCHEMA, VIEWS_BY_ADVERTISER, in_window

_CHUNK_COLUMNS = [("chunk_begin", pa.int64()), ("chunk_end", pa.int64())]
SPEED_COUNTS_SCHEMA = pa.schema(_CHUNK_COLUMNS + list(COUNTS_SCHEMA))
SPEED_VIEWERS_SCHEMA = pa.schema(_CHUNK_COLUMNS + list(VIEWERS_SCHEMA))
SHARD_ROI_SCHEMA = pa.schema([("advertiser_id", pa.int64()), ("spend", pa.float64()),
                              ("attributed_revenue", pa.float64())])
_COMPACT_EVERY = 16


class StaleSnapshotError(RuntimeError):
    """The shard no longer (or not yet) holds the state of the requested snapshot."""


@dataclass(frozen=True)
class BatchPartition:
    """This shard's part of one batch view."""

    version: int
    counts: pa.Table     # COUNTS_SCHEMA, advertisers of this shard
    viewers: pa.Table    # VIEWERS_SCHEMA, users of this shard
    roi: pa.Table        # SHARD_ROI_SCHEMA, advertisers of this shard


def empty_partition(version: int = 0) -> BatchPartition:
    """The batch view of an empty log prefix."""
    return BatchPartition(version, COUNTS_SCHEMA.empty_table(), VIEWERS_SCHEMA.empty_table(),
                          SHARD_ROI_SCHEMA.empty_table())


class ViewShard:
    """Batch and real-time view partitions of one shard (thread-safe)."""

    def __init__(self, index: int, speed_start: int = 0) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._batch: dict[int, BatchPartition] = {0: empty_partition(0)}
        self._applied_end = speed_start
        self._speed_counts = SPEED_COUNTS_SCHEMA.empty_table()
        self._speed_viewers = SPEED_VIEWERS_SCHEMA.empty_table()
        self._appends = 0
        self._speed_floor = speed_start  # every held chunk begins at or after this offset

    # -- updates ------------------------------------------------------------------------

    def load_batch(self, partition: BatchPartition) -> int:
        """Hold a new batch view version (the green one) next to the current one."""
        with self._lock:
            self._batch[partition.version] = partition
        return partition.version

    def apply(self, begin: int, end: int, counts: pa.Table, viewers: pa.Table) -> int:
        """Apply the real-time delta of log offsets ``[begin, end)``; returns the applied end.

        Deltas must come in log order; a delta already applied (``end <= applied end``) is
        ignored, so re-delivery after a retry is harmless.
        """
        with self._lock:
            if end <= self._applied_end:
                return self._applied_end
            if begin != self._applied_end:
                raise ValueError(f"shard {self.index}: delta [{begin}, {end}) does not follow applied "
                                 f"offset {self._applied_end}")
            self._speed_counts = self._append(self._speed_counts, counts, begin, end)
            self._speed_viewers = self._append(self._speed_viewers, viewers, begin, end)
            self._appends += 1
            if self._appends % _COMPACT_EVERY == 0:
                self._speed_counts = self._speed_counts.combine_chunks()
                self._speed_viewers = self._speed_viewers.combine_chunks()
            self._applied_end = end
            return end

    @staticmethod
    def _append(table: pa.Table, delta: pa.Table, begin: int, end: int) -> pa.Table:
        if delta.num_rows == 0:
            return table
        rows = delta.num_rows
        delta = delta.add_column(0, "chunk_end", pa.repeat(pa.scalar(end, pa.int64()), rows))
        delta = delta.add_column(0, "chunk_begin", pa.repeat(pa.scalar(begin, pa.int64()), rows))
        return pa.concat_tables([table, delta.select(table.column_names).cast(table.schema)])

    def drop_below(self, version: int) -> None:
        """After the switch to batch view ``version``: forget older views and chunks below it."""
        with self._lock:
            self._batch = {v: p for v, p in self._batch.items() if v >= version}
            keep = pc.greater_equal(self._speed_counts.column("chunk_begin"), version)
            self._speed_counts = self._speed_counts.filter(keep).combine_chunks()
            keep = pc.greater_equal(self._speed_viewers.column("chunk_begin"), version)
            self._speed_viewers = self._speed_viewers.filter(keep).combine_chunks()
            self._speed_floor = max(self._speed_floor, version)

    def reset_speed(self, start: int) -> None:
        """Forget all real-time state; deltas are applied again from offset ``start``."""
        with self._lock:
            self._applied_end = start
            self._speed_floor = start
            self._speed_counts = SPEED_COUNTS_SCHEMA.empty_table()
            self._speed_viewers = SPEED_VIEWERS_SCHEMA.empty_table()

    def status(self) -> dict[str, Any]:
        """Applied real-time offset, held batch versions and row counts."""
        with self._lock:
            return {"index": self.index, "applied_end": self._applied_end, "versions": sorted(self._batch),
                    "speed_count_rows": self._speed_counts.num_rows,
                    "speed_viewer_rows": self._speed_viewers.num_rows}

    # -- queries ------------------------------------------------------------------------

    def _snapshot(self, request: dict[str, Any], table: str) -> tuple[BatchPartition, pa.Table]:
        """The batch partition of the requested version and the real-time ``table``
        ("counts" or "viewers") restricted to chunks inside ``[version, speed_end)``."""
        version, speed_end = int(request["version"]), int(request["speed_end"])
        with self._lock:
            partition = self._batch.get(version)
            if partition is None:
                raise StaleSnapshotError(f"shard {self.index} holds batch views {sorted(self._batch)}, not {version}")
            if self._applied_end < speed_end:
                raise StaleSnapshotError(f"shard {self.index} applied offsets up to {self._applied_end} < {speed_end}")
            speed = self._speed_counts if table == "counts" else self._speed_viewers
            # Filtering by chunk is only needed when the snapshot excludes some held chunks.
            exact = self._speed_floor >= version and self._applied_end <= speed_end
        return partition, speed if exact else _chunks_within(speed, version, speed_end)

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one query over snapshot ``(request['version'], request['speed_end'])``."""
        operation = request.get("op")
        if operation == "ads_shown":
            return self._ads_shown(request)
        if operation == "active_viewers":
            return self._active_viewers(request)
        if operation == "roi":
            return self._roi(request)
        if operation == "status":
            return self.status()
        raise ValueError(f"unknown view-shard request op {operation!r}")

    def _ads_shown(self, request: dict[str, Any]) -> dict[str, Any]:
        partition, speed_counts = self._snapshot(request, "counts")
        first, last = int(request["first_minute"]), int(request["last_minute"])
        advertiser = request.get("advertiser_id")
        parts = []
        for table in (partition.counts, speed_counts):
            mask = in_window(table.column("minute"), first, last)
            if advertiser is not None:
                mask = pc.and_(mask, pc.equal(table.column("advertiser_id"), int(advertiser)))
            parts.append(table.filter(mask).select(["advertiser_id", "views"]))
        views = sum(int(pc.sum(part.column("views")).as_py() or 0) for part in parts)
        reply: dict[str, Any] = {"views": views}
        top_k = int(request.get("top_k") or 0)
        if top_k:
            accumulator = VIEWS_BY_ADVERTISER.create()
            for part in parts:  # batch part, then real-time part: one combine contract
                accumulator = VIEWS_BY_ADVERTISER.add(accumulator, part)
            grouped = VIEWS_BY_ADVERTISER.finalize(accumulator)
            grouped = grouped.filter(pc.greater(grouped.column("views"), 0))
            reply["top"] = grouped.sort_by([("views", "descending"), ("advertiser_id", "ascending")]).slice(0, top_k)
        return reply

    def _active_viewers(self, request: dict[str, Any]) -> dict[str, Any]:
        partition, speed_viewers = self._snapshot(request, "viewers")
        first, last = int(request["first_minute"]), int(request["last_minute"])
        accumulator = DISTINCT_USERS.create()
        for table in (partition.viewers, speed_viewers):
            accumulator = DISTINCT_USERS.add(accumulator, table.filter(in_window(table.column("minute"), first, last)))
        return {"users": DISTINCT_USERS.finalize(accumulator).num_rows}

    def _roi(self, request: dict[str, Any]) -> dict[str, Any]:
        partition, _ = self._snapshot({"version": request["version"], "speed_end": 0}, "counts")
        table = partition.roi
        advertiser = request.get("advertiser_id")
        if advertiser is not None:
            table = table.filter(pc.equal(table.column("advertiser_id"), int(advertiser)))
        return {"roi": table}


def _chunks_within(table: pa.Table, version: int, speed_end: int) -> pa.Table:
    """Rows of real-time chunks inside ``[version, speed_end)``."""
    if table.num_rows == 0:
        return table
    mask = pc.and_(pc.greater_equal(table.column("chunk_begin"), version),
                   pc.less_equal(table.column("chunk_end"), speed_end))
    return table.filter(mask)
