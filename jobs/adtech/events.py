"""The ad-tech event contract: schema, normalization and vectorized validation of ingested rows.

``validate_events(batch)`` splits a batch into rows that satisfy the contract (cast to
``EVENT_SCHEMA``) and rejected rows with a one-phrase ``reject_reason`` each.  A row is
rejected, with the first reason that applies, when:

- a required field is missing (null): ``event_id``, ``event_time``, ``event_type``,
  ``user_id``, ``advertiser_id``, ``cost``, ``revenue``, and ``ad_id`` for views/clicks;
- ``event_time`` is a string that does not parse as an ISO-8601 time;
- ``event_type`` is not ``view``, ``click`` or ``purchase``;
- ``cost`` or ``revenue`` is negative or NaN.

A batch that lacks a whole column, or whose column cannot be cast to the contract type,
is bad input and raises ``ValueError`` naming the column.  This module imports only
pyarrow and numpy (``datasets.adevents`` uses its schema).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["EVENT_SCHEMA", "EVENT_TYPES", "REJECT_SCHEMA", "validate_events", "minute_of"]

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("event_time", pa.timestamp("ms", tz="UTC")),
        pa.field("event_type", pa.string()),
        pa.field("user_id", pa.int64()),
        pa.field("ad_id", pa.int64()),
        pa.field("advertiser_id", pa.int64()),
        pa.field("cost", pa.float64()),
        pa.field("revenue", pa.float64()),
    ]
)
EVENT_TYPES = ("view", "click", "purchase")
# Rejected rows keep every field as text, so any malformed value can be stored and shown.
REJECT_SCHEMA = pa.schema([pa.field(f.name, pa.string()) for f in EVENT_SCHEMA] + [("reject_reason", pa.string())])
_REQUIRED = ("event_id", "event_time", "event_type", "user_id", "advertiser_id", "cost", "revenue")
_TIME_TYPE = pa.timestamp("ms", tz="UTC")
_MS_PER_MINUTE = 60_000


def minute_of(times: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Event-time minute (whole minutes since the epoch, int64) of timestamp[ms] values."""
    return pc.divide(pc.cast(times, pa.int64()), _MS_PER_MINUTE)


def _column(batch: pa.Table, name: str) -> pa.ChunkedArray:
    if name not in batch.column_names:
        raise ValueError(f"event batch has no column {name!r} (columns: {batch.column_names})")
    return batch.column(name)


def _parse_times(column: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Event times as timestamp[ms, UTC] and a mask of values that were present but unparsable."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            column = pc.assume_timezone(column, "UTC")
        return pc.cast(column, _TIME_TYPE), pa.chunked_array([pa.array(np.zeros(len(column), bool))])
    if pa.types.is_integer(kind):
        return pc.cast(pc.cast(column, pa.int64()), _TIME_TYPE), pa.chunked_array([pa.array(np.zeros(len(column), bool))])
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        parsed = _parse_iso(column)
        unparsable = pc.and_(pc.is_valid(column), pc.is_null(parsed))
        return parsed, unparsable
    raise ValueError(f"event batch column 'event_time' has type {kind}; expected a timestamp, int64 ms or ISO string")


def _parse_iso(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO-8601 strings (``2026-01-05T10:00:00[.123][Z|+00:00]``) to timestamp[ms, UTC]; bad ones null."""
    pieces = []
    for chunk in text.chunks:
        # Arrow's cast parses ISO-8601 with an optional zone; invalid strings fail the whole
        # cast, so fall back to strptime formats with error_is_null on failure.
        try:
            pieces.append(pc.cast(pc.cast(chunk, pa.timestamp("ms", tz="UTC")), _TIME_TYPE))
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        best = None
        for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d %H:%M:%S"):
            attempt = pc.strptime(chunk, format=fmt, unit="ms", error_is_null=True)
            if attempt.type.tz is None:
                attempt = pc.assume_timezone(attempt, "UTC")
            attempt = pc.cast(attempt, _TIME_TYPE)
            best = attempt if best is None else pc.coalesce(best, attempt)
        pieces.append(best)
    return pa.chunked_array(pieces, type=_TIME_TYPE)


def _cast(column: pa.ChunkedArray, name: str, kind: pa.DataType) -> pa.ChunkedArray:
    try:
        return pc.cast(column, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise ValueError(f"event batch column {name!r} of type {column.type} cannot be cast to {kind}: {error}") from None


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_timestamp(column.type):
        return pc.cast(pc.cast(column, pa.int64()), pa.string())
    return pc.cast(column, pa.string())


def validate_events(batch: pa.Table | pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
    """Split ``batch`` into (valid rows as ``EVENT_SCHEMA``, rejected rows as ``REJECT_SCHEMA``).

    Row order is kept in both outputs.  Fully vectorized: a few compute kernels per column.
    """
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if not isinstance(batch, pa.Table):
        raise ValueError(f"ingest expects a pyarrow Table or RecordBatch, got {type(batch).__name__}")
    times, unparsable = _parse_times(_column(batch, "event_time"))
    columns = {
        "event_id": _cast(_column(batch, "event_id"), "event_id", pa.string()),
        "event_time": times,
        "event_type": _cast(_column(batch, "event_type"), "event_type", pa.string()),
        "user_id": _cast(_column(batch, "user_id"), "user_id", pa.int64()),
        "ad_id": _cast(_column(batch, "ad_id"), "ad_id", pa.int64()),
        "advertiser_id": _cast(_column(batch, "advertiser_id"), "advertiser_id", pa.int64()),
        "cost": _cast(_column(batch, "cost"), "cost", pa.float64()),
        "revenue": _cast(_column(batch, "revenue"), "revenue", pa.float64()),
    }
    table = pa.table(columns, schema=EVENT_SCHEMA)
    reason = pa.nulls(table.num_rows, pa.string())
    checks: list[tuple[pa.ChunkedArray | pa.Array, str]] = []
    for name in _REQUIRED:
        if name == "event_time":
            checks.append((unparsable, "unparsable event_time"))
        checks.append((pc.is_null(columns[name]), f"missing {name}"))
    is_purchase = pc.equal(columns["event_type"], "purchase")
    checks.append((pc.and_(pc.invert(pc.fill_null(is_purchase, False)), pc.is_null(columns["ad_id"])), "missing ad_id"))
    known = pc.is_in(columns["event_type"], value_set=pa.array(EVENT_TYPES))
    checks.append((pc.invert(known), "unknown event_type"))
    for money in ("cost", "revenue"):
        bad = pc.or_kleene(pc.less(columns[money], 0.0), pc.is_nan(columns[money]))
        checks.append((bad, f"negative or NaN {money}"))
    # Later checks are applied first so that the earliest failing check wins.
    for mask, text in reversed(checks):
        reason = pc.if_else(pc.fill_null(mask, False), pa.scalar(text), reason)
    rejected_mask = pc.is_valid(reason)
    if not pc.any(rejected_mask).as_py():
        return table, REJECT_SCHEMA.empty_table()
    valid = table.filter(pc.invert(rejected_mask))
    source = batch.filter(rejected_mask)
    rejected = {name: _as_text(source.column(name)) for name in EVENT_SCHEMA.names}
    rejected["reject_reason"] = pc.filter(reason, rejected_mask)
    return valid, pa.table(rejected, schema=REJECT_SCHEMA)
