"""The serving layer: answers queries from a consistent (batch view W, speed offset H) pair.

The serving layer owns the *snapshot*: the current batch view version ``W`` and the
published speed high-water offset ``H`` (``H >= W``).  A query reads the snapshot once
(under a lock), scatters it to every view shard (``engine.scatter_gather`` over shard
actors on Ray, or a plain loop over in-process shards inline) and merges the replies;
the answer reports ``(W, H)``: it covers exactly the log offsets below ``H``.

Blue-green switch to a new batch view ``W'``: every shard first loads its part of the new
view next to the old one; then the snapshot flips to ``(W', max(H, W'))`` in one
assignment; then shards drop the old view and real-time chunks below ``W'``.  A query
that still holds the old snapshot and reaches a shard after the drop gets a
``StaleSnapshotError`` from it and is retried with the new snapshot, so no answer ever
mixes the old pair and the new pair.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from engine.lambda_arch.shard import StaleSnapshotError, ViewShard
from engine.lambda_arch.views import roi_values
from engine.errors import QueryFailedError


@dataclass(frozen=True)
class Answer:
    """A query's answer and the log offsets it covers.

    ``value`` is an int (counts), or a table (top-k, ROI).  The answer equals the query
    over the acknowledged, de-duplicated events with offsets below ``speed_offset``:
    ``[0, batch_offset)`` from the batch view and ``[batch_offset, speed_offset)`` from
    the real-time view (ROI: batch only, ``speed_offset == batch_offset``).
    """

    value: Any
    batch_offset: int
    speed_offset: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def covers(self) -> tuple[int, int]:
        """The offsets covered: ``(0, speed_offset)`` as a half-open range."""
        return (0, self.speed_offset)


Gather = Callable[[dict[str, Any]], list[dict[str, Any]]]


def inline_gather(shards: Sequence[ViewShard]) -> Gather:
    """Scatter to in-process shards in order (the inline executor)."""

    def gather(request: dict[str, Any]) -> list[dict[str, Any]]:
        return [shard.handle(request) for shard in shards]

    return gather


def ray_gather(actors: Sequence[object], deadline_s: float) -> Gather:
    """Scatter to view-shard actors with ``engine.scatter_gather`` (deadline per request).

    Any missing shard makes the gather fail (an answer over part of the shards would not
    equal the query over the offsets it reports), and the serving layer retries.
    """
    from engine.scatter_gather import ScatterGatherOptions
    from engine.scatter_gather.ray_executor import RayScatterGather

    options = ScatterGatherOptions(deadline_s=deadline_s, min_replies=len(actors))
    service = RayScatterGather.from_actors(list(actors), aggregator=list, options=options)

    def gather(request: dict[str, Any]) -> list[dict[str, Any]]:
        result = service.gather(request)
        if result.partial:
            raise StaleSnapshotError(f"shards missing: {result.missing} {result.errors}")
        return result.value

    return gather


class ServingLayer:
    """Snapshot owner and query front end over the view shards."""

    def __init__(self, gather: Gather, batch_version: int, speed_offset: int, retries: int = 20) -> None:
        self._gather = gather
        self._lock = threading.Lock()
        self._snapshot = (batch_version, max(speed_offset, batch_version))
        self.retries = retries
        self.latencies_s: list[float] = []

    @property
    def snapshot(self) -> tuple[int, int]:
        """The current (batch version W, published speed offset H)."""
        return self._snapshot

    def publish_speed(self, high_water: int) -> None:
        """The speed layer made offsets below ``high_water`` visible on every shard."""
        with self._lock:
            version, current = self._snapshot
            if high_water > current:
                self._snapshot = (version, high_water)

    def switch_batch(self, version: int) -> None:
        """Flip to batch view ``version`` (already loaded on every shard), atomically."""
        with self._lock:
            old_version, speed = self._snapshot
            if version < old_version:
                raise ValueError(f"batch view {version} is older than the served view {old_version}")
            self._snapshot = (version, max(speed, version))

    def set_gather(self, gather: Gather) -> None:
        """Serve from a new set of shards (after a speed-layer rebuild)."""
        self._gather = gather

    def reset_speed(self, high_water: int) -> None:
        """After a speed-layer rebuild: the published offset restarts at ``high_water``."""
        with self._lock:
            version, _ = self._snapshot
            self._snapshot = (version, max(version, high_water))

    def _ask(self, request: dict[str, Any]) -> tuple[list[dict[str, Any]], int, int]:
        last_error: Exception | None = None
        for attempt in range(self.retries):
            version, speed = self._snapshot
            try:
                return self._gather({**request, "version": version, "speed_end": speed}), version, speed
            except StaleSnapshotError as error:
                last_error = error
            except Exception as error:  # scatter-gather reports a shard's StaleSnapshotError as missing
                if "StaleSnapshot" not in str(error) and "NotEnoughReplies" not in type(error).__name__:
                    raise
                last_error = error
            time.sleep(min(0.05, 0.001 * 2 ** attempt))
        raise QueryFailedError(f"no consistent answer after {self.retries} attempts: {last_error}")

    def ads_shown(self, first_minute: int, last_minute: int, advertiser_id: int | None, top_k: int) -> Answer:
        """Views in the minute window, overall or for one advertiser; top-k advertisers."""
        started = time.perf_counter()
        replies, version, speed = self._ask({"op": "ads_shown", "first_minute": first_minute,
                                             "last_minute": last_minute, "advertiser_id": advertiser_id,
                                             "top_k": top_k})
        extra: dict[str, Any] = {}
        if top_k:
            tops = [reply["top"] for reply in replies if "top" in reply]
            merged = pa.concat_tables(tops) if tops else pa.table({"advertiser_id": pa.array([], pa.int64()),
                                                                   "views": pa.array([], pa.int64())})
            extra["top"] = merged.sort_by([("views", "descending"), ("advertiser_id", "ascending")]).slice(0, top_k)
        answer = Answer(sum(int(reply["views"]) for reply in replies), version, speed, extra)
        self.latencies_s.append(time.perf_counter() - started)
        return answer

    def active_viewers(self, first_minute: int, last_minute: int) -> Answer:
        """Distinct users with a view in the minute window (shards hold disjoint users)."""
        replies, version, speed = self._ask({"op": "active_viewers", "first_minute": first_minute,
                                             "last_minute": last_minute})
        return Answer(sum(int(reply["users"]) for reply in replies), version, speed)

    def roi(self, advertiser_id: int | None) -> Answer:
        """ROI from the batch view: per advertiser (``extra['table']``) and overall (value)."""
        replies, version, _ = self._ask({"op": "roi", "advertiser_id": advertiser_id})
        table = pa.concat_tables([reply["roi"] for reply in replies]).sort_by("advertiser_id")
        table = table.append_column("roi", roi_values(table.column("attributed_revenue"), table.column("spend")))
        spend = float(pc.sum(table.column("spend")).as_py() or 0.0)
        revenue = float(pc.sum(table.column("attributed_revenue")).as_py() or 0.0)
        value = (revenue - spend) / spend if spend != 0 else None
        return Answer(value, version, version, {"table": table, "spend": spend, "attributed_revenue": revenue})
