"""Pure per-batch Arrow functions that compute and merge the ad-tech views.

Every view is a table of *mergeable partials*, so the batch layer (MapReduce), the speed
layer (one delta per ingest batch) and the serving layer (batch view + real-time view)
combine them with one contract, :class:`Combiner` (create / add / merge / finalize,
after Beam's ``CombineFn``):

- ``counts``: (advertiser_id, minute, views, spend) -- views and spend per advertiser
  per event-time minute; merged by summing.
- ``viewers``: (minute, user_id) -- distinct users with a view in a minute; merged by
  set union (distinct rows).
- ``attribution``: (user_id, advertiser_id, attributed_revenue) -- batch only, because
  it needs every click and purchase of a (user, advertiser) pair at once.

Minutes are whole minutes since the epoch of the event time (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.lambda_arch.events import minute_of

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


# -- the combine contract ----------------------------------------------------------------

@dataclass(frozen=True)
class Combiner:
    """Merges partial tables of one view: ``create() -> acc``, ``add(acc, table) -> acc``,
    ``merge(accs) -> acc``, ``finalize(acc) -> table``.

    Groups rows by ``keys``; ``sums`` columns are summed, and with no ``sums`` the result
    is the distinct key rows (set union).  An accumulator is a list of partial tables,
    compacted once it holds ``compact_after`` of them, so adding is cheap and amortized.
    """

    keys: tuple[str, ...]
    sums: tuple[str, ...] = ()
    schema: pa.Schema | None = None
    compact_after: int = 32

    def create(self) -> list[pa.Table]:
        """An empty accumulator."""
        return []

    def add(self, accumulator: list[pa.Table], table: pa.Table) -> list[pa.Table]:
        """The accumulator with ``table``'s rows added."""
        accumulator = accumulator + [table.select(list(self.keys + self.sums))] if table.num_rows else accumulator
        if len(accumulator) >= self.compact_after:
            accumulator = [self.finalize(accumulator)]
        return accumulator

    def merge(self, accumulators: Sequence[list[pa.Table]]) -> list[pa.Table]:
        """One accumulator holding all rows of ``accumulators``."""
        merged: list[pa.Table] = []
        for accumulator in accumulators:
            merged.extend(accumulator)
        return [self.finalize(merged)] if len(merged) >= self.compact_after else merged

    def finalize(self, accumulator: list[pa.Table]) -> pa.Table:
        """The merged view: one row per key."""
        return self(pa.concat_tables(accumulator) if accumulator else self.empty())

    def empty(self) -> pa.Table:
        """A table with no rows and this view's columns."""
        schema = self.schema or pa.schema([(name, pa.int64()) for name in self.keys + self.sums])
        return schema.empty_table()

    def __call__(self, table: pa.Table) -> pa.Table:
        """Reduce one table of partials (usable directly as a MapReduce combine/reduce)."""
        grouped = table.group_by(list(self.keys), use_threads=False).aggregate([(name, "sum") for name in self.sums])
        columns = {key: grouped.column(key) for key in self.keys}
        for name in self.sums:
            columns[name] = grouped.column(f"{name}_sum").cast(table.schema.field(name).type)
        result = pa.table(columns)
        return result.cast(self.schema) if self.schema is not None else result


COUNTS = Combiner(("advertiser_id", "minute"), ("views", "spend"), COUNTS_SCHEMA)
VIEWERS = Combiner(("minute", "user_id"), (), VIEWERS_SCHEMA)
ATTRIBUTED = Combiner(("user_id", "advertiser_id"), ("attributed_revenue",), ATTRIBUTION_SCHEMA)
# Serving-side merges of a batch-view part and a real-time part.
VIEWS_BY_ADVERTISER = Combiner(("advertiser_id",), ("views",),
                               pa.schema([("advertiser_id", pa.int64()), ("views", pa.int64())]))
DISTINCT_USERS = Combiner(("user_id",), (), pa.schema([("user_id", pa.int64())]))


# -- map side: events -> partials -------------------------------------------------------

def count_partials(events: pa.Table) -> pa.Table:
    """Views and spend per (advertiser, minute) of a batch of valid events."""
    is_view = pc.equal(events.column("event_type"), "view")
    table = pa.table({
        "advertiser_id": events.column("advertiser_id"),
        "minute": minute_of(events.column("event_time")),
        "views": pc.cast(is_view, pa.int64()),
        "spend": events.column("cost"),
    })
    return COUNTS(table)


def viewer_partials(events: pa.Table) -> pa.Table:
    """Distinct (minute, user) pairs of the view events of a batch."""
    views = events.filter(pc.equal(events.column("event_type"), "view"))
    table = pa.table({"minute": minute_of(views.column("event_time")), "user_id": views.column("user_id")})
    return VIEWERS(table)


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


# -- windows -----------------------------------------------------------------------------

def window_minutes(as_of_ms: int, minutes: int) -> tuple[int, int]:
    """Inclusive minute range of 'the last ``minutes`` minutes as of ``as_of_ms``'."""
    if minutes < 1:
        raise ValueError(f"window must be at least 1 minute, got {minutes}")
    last = as_of_ms // 60_000
    return last - minutes + 1, last


def in_window(minute: pa.ChunkedArray | pa.Array, first: int, last: int) -> pa.Array:
    """Mask of minutes within ``[first, last]``."""
    return pc.and_(pc.greater_equal(minute, first), pc.less_equal(minute, last))
