"""The ad-tech event contract: schema, normalization and vectorized validation of ingested rows.

``validate_events(batch)`` splits a batch into rows that satisfy the contract (cast to
``EVENT_SCHEMA``) and rejected rows with a one-phrase ``reject_reason`` each: the first
that applies of, field by field (``event_id``, ``event_time``, ``event_type``,
``user_id``, ``advertiser_id``, ``cost``, ``revenue``, then ``ad_id``):

- a value that cannot be cast to the field's type (``"invalid user_id (not int64)"``),
  or an ``event_time`` that does not parse (``"unparsable event_time"``; ``times.py``
  says what parses: timestamps, epoch milliseconds, ISO-8601 strings with or without
  fraction and zone);
- a missing (null) value (``"missing user_id"``; ``ad_id`` only for views and clicks);

then ``"unknown event_type"`` (not ``view``, ``click`` or ``purchase``), then
``"negative or non-finite cost"`` (or ``revenue``: below 0, NaN or infinite).

One bad value rejects its row only.  A batch that lacks a whole column, or whose column
has a type that cannot be cast to the contract type at all, is bad input and raises
``ValueError`` naming the column.  This module (and ``times.py``) imports only pyarrow and numpy
(``datasets.adevents`` uses its schema); the engine is imported only to split a column
that holds uncastable values.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from jobs.adtech.times import parse_event_times

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
_MS_PER_MINUTE = 60_000


def minute_of(times: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Event-time minute (whole minutes since the epoch, int64) of timestamp[ms] values."""
    return pc.divide(pc.cast(times, pa.int64()), _MS_PER_MINUTE)


def _column(batch: pa.Table, name: str) -> pa.ChunkedArray:
    if name not in batch.column_names:
        raise ValueError(f"event batch has no column {name!r} (columns: {batch.column_names})")
    return batch.column(name)


def _cast(column: pa.ChunkedArray, name: str, kind: pa.DataType) -> tuple[pa.ChunkedArray | pa.Array,
                                                                          pa.Array | None]:
    """``column`` cast to ``kind`` and the mask of rows whose value cannot be cast (they
    are null in the result; ``None`` when every row cast)."""
    try:
        return pc.cast(column, kind), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    from engine.lambda_arch.contract import cast_rows  # bad input only: the module stays engine-free

    try:
        cast, invalid = cast_rows(column, kind)
    except ValueError as error:
        raise ValueError(f"event batch column {name!r} {error}") from None
    return cast, None if invalid is None else pa.array(invalid)


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_timestamp(column.type):
        return pc.cast(pc.cast(column, pa.int64()), pa.string())
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        # Only rejected rows get here (invalid UTF-8, nested values): a loop is fine.
        return pa.array([None if value is None else value.decode("utf-8", "backslashreplace")
                         if isinstance(value, bytes) else str(value) for value in column.to_pylist()], pa.string())


_TYPES = {field.name: field.type for field in EVENT_SCHEMA}


def validate_events(batch: pa.Table | pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
    """Split ``batch`` into (valid rows as ``EVENT_SCHEMA``, rejected rows as ``REJECT_SCHEMA``).

    Row order is kept in both outputs.  Fully vectorized: a few compute kernels per column
    (a column with a value that cannot be cast is split row by row).
    """
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if not isinstance(batch, pa.Table):
        raise ValueError(f"ingest expects a pyarrow Table or RecordBatch, got {type(batch).__name__}")
    columns: dict[str, pa.ChunkedArray | pa.Array] = {}
    invalid: dict[str, pa.Array | None] = {}
    for name in EVENT_SCHEMA.names:
        if name == "event_time":
            columns[name], invalid[name] = parse_event_times(_column(batch, name))
        else:
            columns[name], invalid[name] = _cast(_column(batch, name), name, _TYPES[name])
    table = pa.table(columns, schema=EVENT_SCHEMA)
    checks: list[tuple[pa.ChunkedArray | pa.Array, str]] = []
    for name in _REQUIRED:
        if invalid[name] is not None:
            checks.append((invalid[name], "unparsable event_time" if name == "event_time"
                           else f"invalid {name} (not {_TYPES[name]})"))
        checks.append((pc.is_null(columns[name]), f"missing {name}"))
    if invalid["ad_id"] is not None:
        checks.append((invalid["ad_id"], "invalid ad_id (not int64)"))
    is_purchase = pc.equal(columns["event_type"], "purchase")
    checks.append((pc.and_(pc.invert(pc.fill_null(is_purchase, False)), pc.is_null(columns["ad_id"])), "missing ad_id"))
    known = pc.is_in(columns["event_type"], value_set=pa.array(EVENT_TYPES))
    checks.append((pc.invert(known), "unknown event_type"))
    for money in ("cost", "revenue"):
        bad = pc.or_kleene(pc.less(columns[money], 0.0), pc.invert(pc.is_finite(columns[money])))
        checks.append((bad, f"negative or non-finite {money}"))
    reason = pa.nulls(table.num_rows, pa.string())
    for mask, text in reversed(checks):  # applied last to first, so the earliest failing check wins
        reason = pc.if_else(pc.fill_null(mask, False), pa.scalar(text), reason)
    rejected_mask = pc.is_valid(reason)
    if not pc.any(rejected_mask).as_py():
        return table, REJECT_SCHEMA.empty_table()
    valid = table.filter(pc.invert(rejected_mask))
    source = batch.filter(rejected_mask)
    rejected = {name: _as_text(source.column(name)) for name in EVENT_SCHEMA.names}
    rejected["reject_reason"] = pc.filter(reason, rejected_mask)
    return valid, pa.table(rejected, schema=REJECT_SCHEMA)
