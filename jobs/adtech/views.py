"""The ad-tech views: pure per-batch Arrow functions and the combiners that merge them.

Every view is a table of mergeable partials, so the batch layer (MapReduce), the speed
layer (one delta per ingest batch) and the serving layer (batch view + real-time view)
merge them with one contract, ``engine.common.combine`` (create / add / merge / finalize):

- ``counts``: (advertiser_id, minute, views, spend) -- views and spend per advertiser
  per event-time minute; summed.  Sharded by advertiser.
- ``viewers``: (minute, user_id) -- distinct users with a view in a minute; set union.
  Sharded by user, so per-shard distinct counts add up.
- ``attribution``: (user_id, advertiser_id, attributed_revenue) -- batch only, because
  last-click attribution needs every click and purchase of a (user, advertiser) pair at
  once.  Sharded by advertiser, like ``counts``, so ROI is computed per shard.

Minutes are whole minutes since the epoch of the event time (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.common.combine import GroupByAggregate, KeyedCombineFn
from engine.lambda_arch import View
from jobs.adtech.events import minute_of

ATTRIBUTION_WINDOW_MS = 24 * 3_600_000

COUNTS_SCHEMA = pa.schema([("advertiser_id", pa.int64()), ("minute", pa.int64()),
                           ("views", pa.int64()), ("spend", pa.float64())])
VIEWERS_SCHEMA = pa.schema([("minute", pa.int64()), ("user_id", pa.int64())])
TOUCHES_SCHEMA = pa.schema([("user_id", pa.int64()), ("advertiser_id", pa.int64()),
                            ("time_ms", pa.int64()), ("is_click", pa.bool_()), ("revenue", pa.float64())])
ATTRIBUTION_SCHEMA = pa.schema([("user_id", pa.int64()), ("advertiser_id", pa.int64()),
                                ("attributed_revenue", pa.float64())])
ROI_SCHEMA = pa.schema([("advertiser_id", pa.int64()), ("spend", pa.float64()),
                        ("attributed_revenue", pa.float64()), ("roi", pa.float64())])

COUNTS = GroupByAggregate(("advertiser_id", "minute"), {"views": "sum", "spend": "sum"}, COUNTS_SCHEMA)
VIEWERS = GroupByAggregate(("minute", "user_id"), schema=VIEWERS_SCHEMA)
ATTRIBUTED = GroupByAggregate(("user_id", "advertiser_id"), {"attributed_revenue": "sum"}, ATTRIBUTION_SCHEMA)


# -- map side: events -> rows of a view ------------------------------------------------

def count_rows(events: pa.Table) -> pa.Table:
    """One (advertiser, minute, views 0/1, spend) row per event (``COUNTS`` sums them)."""
    return pa.table({
        "advertiser_id": events.column("advertiser_id"),
        "minute": minute_of(events.column("event_time")),
        "views": pc.cast(pc.equal(events.column("event_type"), "view"), pa.int64()),
        "spend": events.column("cost"),
    }, schema=COUNTS_SCHEMA)


def viewer_rows(events: pa.Table) -> pa.Table:
    """(minute, user) of every view event (``VIEWERS`` keeps the distinct pairs)."""
    views = events.filter(pc.equal(events.column("event_type"), "view"))
    return pa.table({"minute": minute_of(views.column("event_time")), "user_id": views.column("user_id")},
                    schema=VIEWERS_SCHEMA)


def touch_rows(events: pa.Table) -> pa.Table:
    """Clicks and purchases reduced to what attribution needs (``TOUCHES_SCHEMA``)."""
    kinds = events.column("event_type")
    wanted = events.filter(pc.or_(pc.equal(kinds, "click"), pc.equal(kinds, "purchase")))
    return pa.table({
        "user_id": wanted.column("user_id"),
        "advertiser_id": wanted.column("advertiser_id"),
        "time_ms": pc.cast(wanted.column("event_time"), pa.int64()),
        "is_click": pc.equal(wanted.column("event_type"), "click"),
        "revenue": wanted.column("revenue"),
    }, schema=TOUCHES_SCHEMA)


def attribute(touches: pa.Table) -> pa.Table:
    """Attributed revenue per (user, advertiser): purchases with a click by the same user
    on the same advertiser at most 24 h before (and not after) the purchase.

    Vectorized last-click lookup: sort by (user, advertiser, time, clicks first), carry
    the index of the latest click forward, and compare times within the same pair.
    """
    if touches.num_rows == 0:
        return ATTRIBUTION_SCHEMA.empty_table()
    users = touches.column("user_id").to_numpy()
    advertisers = touches.column("advertiser_id").to_numpy()
    times = touches.column("time_ms").to_numpy()
    is_click = touches.column("is_click").to_numpy(zero_copy_only=False)
    revenue = touches.column("revenue").to_numpy()
    # A click at the same millisecond as a purchase counts (clicks sort before purchases).
    order = np.lexsort((~is_click, times, advertisers, users))
    users, advertisers, times = users[order], advertisers[order], times[order]
    is_click, revenue = is_click[order], revenue[order]
    positions = np.arange(len(order))
    last_click = np.maximum.accumulate(np.where(is_click, positions, -1))
    safe = np.maximum(last_click, 0)
    attributed = (~is_click) & (last_click >= 0) & (users[safe] == users) \
        & (advertisers[safe] == advertisers) & (times - times[safe] <= ATTRIBUTION_WINDOW_MS)
    table = pa.table({"user_id": users[attributed], "advertiser_id": advertisers[attributed],
                      "attributed_revenue": revenue[attributed]}, schema=ATTRIBUTION_SCHEMA)
    return ATTRIBUTED(table)


@dataclass(frozen=True)
class Attribution(KeyedCombineFn):
    """The combiner of the batch-only attribution view: partials are the touches of a
    key, kept as they are; ``finalize`` attributes all touches of its keys at once."""

    keys: tuple[str, ...] = ("user_id", "advertiser_id")

    def to_partial(self, rows: pa.Table) -> pa.Table:
        return rows.select(TOUCHES_SCHEMA.names).cast(TOUCHES_SCHEMA)

    def merge_partials(self, partials: Sequence[pa.Table]) -> pa.Table:
        return pa.concat_tables(partials).cast(TOUCHES_SCHEMA) if partials else TOUCHES_SCHEMA.empty_table()

    def finalize(self, accumulator: list[pa.Table]) -> pa.Table:
        return attribute(self.merge_partials(accumulator))


# -- ROI -------------------------------------------------------------------------------

def roi_table(counts: pa.Table, attribution: pa.Table) -> pa.Table:
    """Per advertiser: spend, attributed revenue and ROI (null when spend is 0)."""
    spend = counts.group_by("advertiser_id", use_threads=False).aggregate([("spend", "sum")])
    revenue = attribution.group_by("advertiser_id", use_threads=False).aggregate([("attributed_revenue", "sum")])
    joined = spend.join(revenue, "advertiser_id", join_type="full outer")
    spend_values = pc.fill_null(joined.column("spend_sum"), 0.0)
    revenue_values = pc.fill_null(joined.column("attributed_revenue_sum"), 0.0)
    table = pa.table({"advertiser_id": joined.column("advertiser_id"), "spend": spend_values,
                      "attributed_revenue": revenue_values, "roi": roi_values(revenue_values, spend_values)})
    return table.sort_by("advertiser_id").cast(ROI_SCHEMA)


def roi_values(revenue: pa.Array | pa.ChunkedArray, spend: pa.Array | pa.ChunkedArray) -> pa.Array:
    """(revenue - spend) / spend, null where spend is 0."""
    nonzero = pc.not_equal(spend, 0.0)
    return pc.if_else(nonzero, pc.divide(pc.subtract(revenue, spend), pc.if_else(nonzero, spend, 1.0)),
                      pa.scalar(None, pa.float64()))


# -- the views -------------------------------------------------------------------------

COUNTS_VIEW = View("counts", count_rows, COUNTS, shard_by=("advertiser_id",),
                   columns=("event_time", "event_type", "advertiser_id", "cost"))
VIEWERS_VIEW = View("viewers", viewer_rows, VIEWERS, shard_by=("user_id",),
                    columns=("event_time", "event_type", "user_id"))
ATTRIBUTION_VIEW = View("attribution", touch_rows, Attribution(), shard_by=("advertiser_id",), batch_only=True,
                        columns=("event_time", "event_type", "user_id", "advertiser_id", "revenue"))
VIEWS = (COUNTS_VIEW, VIEWERS_VIEW, ATTRIBUTION_VIEW)
