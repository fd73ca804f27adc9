"""The ad-tech queries, as scatter-gather handlers over one shard's snapshot of the views.

- ``ads_shown(as_of=None, hours=24, advertiser_id=None, top_k=0)``: view events in the
  last ``hours`` (whole minutes) as of ``as_of`` (default: the newest event time the
  answer covers), overall or for one advertiser; ``extra['top']`` the top-k advertisers.
- ``active_viewers(as_of=None, minutes=5)``: distinct users with a view in the window.
- ``roi(advertiser_id=None)``: batch only; per advertiser spend, last-click attributed
  revenue and ROI (``extra['table']``), and overall ROI (the value; ``None`` without spend).

``as_of`` is a ``datetime`` or epoch milliseconds.  Each query's ``prepare`` turns the
request into fixed minute bounds once, on the caller's side, so every shard answers the
same window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.common.combine import GroupByAggregate
from engine.lambda_arch import Query, QueryContext, QueryResult, ShardSnapshot
from jobs.adtech.views import ROI_SCHEMA, roi_table, roi_values

VIEWS_BY_ADVERTISER = GroupByAggregate("advertiser_id", {"views": "sum"})
DISTINCT_USERS = GroupByAggregate("user_id")
_TOP_SCHEMA = pa.schema([("advertiser_id", pa.int64()), ("views", pa.int64())])


def window_minutes(as_of_ms: int, minutes: int) -> tuple[int, int]:
    """Inclusive minute range of 'the last ``minutes`` minutes as of ``as_of_ms``'."""
    if minutes < 1:
        raise ValueError(f"window must be at least 1 minute, got {minutes}")
    last = as_of_ms // 60_000
    return last - minutes + 1, last


def in_window(minute: pa.ChunkedArray | pa.Array, first: int, last: int) -> pa.Array:
    """Mask of minutes within ``[first, last]``."""
    return pc.and_(pc.greater_equal(minute, first), pc.less_equal(minute, last))


def as_ms(moment: datetime | int | None, default: int) -> int:
    """Epoch milliseconds of ``moment`` (``default`` when it is None)."""
    if moment is None:
        return default
    if isinstance(moment, datetime):
        return int(moment.timestamp() * 1000)
    return int(moment)


def _fields(name: str, request: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(request) - set(defaults))
    if unknown:
        raise TypeError(f"{name}() got unexpected argument(s) {unknown}; it takes {sorted(defaults)}")
    return {**defaults, **request}


# -- ads_shown ---------------------------------------------------------------------------

def prepare_ads_shown(request: dict[str, Any], context: QueryContext) -> dict[str, Any]:
    """Fixed minute bounds for ``ads_shown``."""
    args = _fields("ads_shown", request, {"as_of": None, "hours": 24, "advertiser_id": None, "top_k": 0})
    first, last = window_minutes(as_ms(args["as_of"], context.visible_event_time_ms), int(round(args["hours"] * 60)))
    return {"first_minute": first, "last_minute": last, "advertiser_id": args["advertiser_id"],
            "top_k": int(args["top_k"] or 0)}


def ads_shown_on_shard(snapshot: ShardSnapshot, request: dict[str, Any]) -> dict[str, Any]:
    """Views in the window on this shard (its advertisers), and its top-k advertisers."""
    first, last, advertiser = request["first_minute"], request["last_minute"], request["advertiser_id"]

    def wanted(table: pa.Table) -> pa.Array:
        mask = in_window(table.column("minute"), first, last)
        return mask if advertiser is None else pc.and_(mask, pc.equal(table.column("advertiser_id"), int(advertiser)))

    # Only the columns the answer needs are filtered (a batch part holds a row per
    # advertiser and minute: filtering its other columns too costs twice as much).
    parts = snapshot.parts("counts")
    masks = [wanted(part) for part in parts]
    reply: dict[str, Any] = {"views": sum(int(pc.sum(pc.filter(part.column("views"), mask)).as_py() or 0)
                                          for part, mask in zip(parts, masks))}
    if request["top_k"]:
        parts = [part.select(["advertiser_id", "views"]).filter(mask) for part, mask in zip(parts, masks)]
        grouped = VIEWS_BY_ADVERTISER.finalize(VIEWS_BY_ADVERTISER.merge([VIEWS_BY_ADVERTISER.add([], part)
                                                                          for part in parts]))
        grouped = grouped.filter(pc.greater(grouped.column("views"), 0))
        reply["top"] = _top(grouped.cast(_TOP_SCHEMA), request["top_k"])
    return reply


def _top(table: pa.Table, k: int) -> pa.Table:
    return table.sort_by([("views", "descending"), ("advertiser_id", "ascending")]).slice(0, k)


def merge_ads_shown(replies: list[dict[str, Any]], request: dict[str, Any]) -> QueryResult:
    """Total views; the shards' top-k lists merged (advertisers live on one shard each)."""
    extra = {}
    if request["top_k"]:
        extra["top"] = _top(pa.concat_tables([reply["top"] for reply in replies]), request["top_k"])
    return QueryResult(sum(reply["views"] for reply in replies), extra)


# -- active_viewers ----------------------------------------------------------------------

def prepare_active_viewers(request: dict[str, Any], context: QueryContext) -> dict[str, Any]:
    """Fixed minute bounds for ``active_viewers``."""
    args = _fields("active_viewers", request, {"as_of": None, "minutes": 5})
    first, last = window_minutes(as_ms(args["as_of"], context.visible_event_time_ms), int(args["minutes"]))
    return {"first_minute": first, "last_minute": last}


def active_viewers_on_shard(snapshot: ShardSnapshot, request: dict[str, Any]) -> int:
    """Distinct users with a view in the window on this shard (its users)."""
    first, last = request["first_minute"], request["last_minute"]
    parts = snapshot.parts("viewers", lambda table: in_window(table.column("minute"), first, last))
    return DISTINCT_USERS.finalize([DISTINCT_USERS.to_partial(part.select(["user_id"])) for part in parts]).num_rows


def sum_replies(replies: list[int], request: dict[str, Any]) -> int:
    """The sum of the shards' counts (they count disjoint users)."""
    return sum(replies)


# -- roi -----------------------------------------------------------------------------------

def prepare_roi(request: dict[str, Any], context: QueryContext) -> dict[str, Any]:
    """Checks the arguments of ``roi``."""
    return _fields("roi", request, {"advertiser_id": None})


def roi_on_shard(snapshot: ShardSnapshot, request: dict[str, Any]) -> pa.Table:
    """Spend, attributed revenue and ROI of this shard's advertisers, from the batch view."""
    counts = pa.concat_tables(snapshot.parts("counts"))
    table = roi_table(counts, snapshot.table("attribution"))
    advertiser = request["advertiser_id"]
    return table if advertiser is None else table.filter(pc.equal(table.column("advertiser_id"), int(advertiser)))


def merge_roi(replies: list[pa.Table], request: dict[str, Any]) -> QueryResult:
    """All advertisers' rows (``extra['table']``) and the overall ROI (the value)."""
    table = pa.concat_tables(replies).cast(ROI_SCHEMA).sort_by("advertiser_id")
    spend = float(pc.sum(table.column("spend")).as_py() or 0.0)
    revenue = float(pc.sum(table.column("attributed_revenue")).as_py() or 0.0)
    overall = roi_values(pa.array([revenue]), pa.array([spend]))[0].as_py()
    return QueryResult(overall, {"table": table, "spend": spend, "attributed_revenue": revenue})


ADS_SHOWN = Query("ads_shown", ads_shown_on_shard, merge_ads_shown, views=("counts",), prepare=prepare_ads_shown)
ACTIVE_VIEWERS = Query("active_viewers", active_viewers_on_shard, sum_replies, views=("viewers",),
                       prepare=prepare_active_viewers)
ROI = Query("roi", roi_on_shard, merge_roi, views=("counts", "attribution"), batch_only=True, prepare=prepare_roi)
QUERIES = (ADS_SHOWN, ACTIVE_VIEWERS, ROI)
