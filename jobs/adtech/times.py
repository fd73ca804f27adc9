"""Event times of the ad-tech contract, row by row, to ``timestamp[ms, UTC]``.

Accepted per row (a row that fails is *unparsable*; it never changes how other rows parse):

- timestamps of any unit (naive ones are UTC); finer units are floored to milliseconds;
- integers: epoch milliseconds;
- floating point: epoch milliseconds, floored; NaN and infinities are unparsable;
- strings ``YYYY-MM-DD(T| )hh:mm:ss[.fraction][Z | ±hh | ±hh:mm | ±hhmm]``, e.g.
  ``2026-03-02T10:00:00.123Z``: 1 to 9 fraction digits (truncated to milliseconds), no
  zone means UTC, an offset is below 24 h, and the date and time must exist (no
  February 30, no hour 24, no second 60).

Strings are parsed by one regular expression and integer arithmetic, all vectorized, so
naive and zoned strings, fractions and bad strings may be mixed freely in one batch.
This module imports only pyarrow and numpy.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TIME_TYPE = pa.timestamp("ms", tz="UTC")
_ISO = (r"^(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[T ]"
        r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
        r"(?:\.(?P<fraction>[0-9]{1,9}))?(?P<zone>Z|[+-][0-9]{2}(?::?[0-9]{2})?)?$")
_FIELDS = ("year", "month", "day", "hour", "minute", "second", "fraction", "zone")
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_INT64_MAX = np.iinfo(np.int64).max
_UNIT_MS = {"s": 1000, "ms": 1}
_UNIT_DIVISOR = {"us": 1000, "ns": 1_000_000}


def _digits(text: pa.Array) -> np.ndarray:
    """Digit strings (empty or null: 0) as int64."""
    empty, zero = pa.scalar("", text.type), pa.scalar("0", text.type)
    text = text.fill_null(empty)
    return pc.cast(pc.if_else(pc.equal(text, empty), zero, text), pa.int64()).to_numpy()


def days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    year = year - (month <= 2)
    era = np.floor_divide(year, 400)
    year_of_era = year - era * 400
    day_of_year = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def parse_iso(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(epoch ms, parsed) per string of ``text`` (see the module for the grammar)."""
    parts = pc.extract_regex(text, _ISO)
    matched = pc.is_valid(parts).to_numpy(zero_copy_only=False)
    fields = dict(zip(_FIELDS, parts.flatten()))
    year, month, day, hour, minute, second = (_digits(fields[name]) for name in _FIELDS[:6])
    empty = pa.scalar("", text.type)
    fraction = pc.utf8_slice_codeunits(pc.utf8_rpad(fields["fraction"].fill_null(empty), 9, "0"), 0, 3)
    zone = fields["zone"].fill_null(empty)
    zone_length = pc.utf8_length(zone).to_numpy()
    zone_hours = _digits(pc.utf8_slice_codeunits(zone, 1, 3))
    zone_minutes = _digits(pc.if_else(pa.array(zone_length >= 5), pc.utf8_slice_codeunits(zone, -2), empty))
    sign = np.where(pc.starts_with(zone, "-").to_numpy(zero_copy_only=False), -1, 1)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[np.clip(month, 0, 12)] + (leap & (month == 2))
    parsed = (matched & (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
              & (hour <= 23) & (minute <= 59) & (second <= 59) & (zone_hours <= 23) & (zone_minutes <= 59))
    days = days_from_civil(year, np.clip(month, 1, 12), day)
    ms = ((((days * 24 + hour) * 60 + minute) * 60 + second) * 1000 + _digits(fraction)
          - sign * (zone_hours * 60 + zone_minutes) * 60_000)
    return np.where(parsed, ms, 0), parsed


def _numbers(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(epoch ms, parsed) of a timestamp, integer or floating-point array."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        values = pc.cast(column, pa.int64()).fill_null(0).to_numpy()
        if kind.unit in _UNIT_MS:
            limit = _INT64_MAX // _UNIT_MS[kind.unit]
            parsed = np.abs(values) <= limit
            return np.where(parsed, values, 0) * _UNIT_MS[kind.unit], parsed
        return np.floor_divide(values, _UNIT_DIVISOR[kind.unit]), np.ones(len(values), dtype=bool)
    if pa.types.is_floating(kind):
        values = pc.cast(column, pa.float64()).fill_null(0.0).to_numpy()
        with np.errstate(invalid="ignore"):
            parsed = np.isfinite(values) & (np.abs(values) < 2.0 ** 63)
        return np.floor(np.where(parsed, values, 0.0)).astype(np.int64), parsed
    if pa.types.is_unsigned_integer(kind):
        values = column.fill_null(0).to_numpy().astype(np.uint64)
        parsed = values <= np.uint64(_INT64_MAX)
        return np.where(parsed, values, 0).astype(np.int64), parsed
    values = pc.cast(column, pa.int64()).fill_null(0).to_numpy()
    return values, np.ones(len(values), dtype=bool)


def parse_event_times(column: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """``(times as timestamp[ms, UTC], mask of present but unparsable values)``; nulls
    stay null and are not unparsable.  Raises ``ValueError`` for a column of a type that
    is not a timestamp, a number or a string."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.dictionary_decode()
        kind = column.type
    if pa.types.is_null(kind):  # every value missing
        return pa.nulls(len(column), TIME_TYPE), pa.array(np.zeros(len(column), dtype=bool))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        ms, parsed = parse_iso(column)
    elif pa.types.is_timestamp(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind):
        ms, parsed = _numbers(column)
    else:
        raise ValueError(f"event batch column 'event_time' has type {kind}; expected a timestamp, "
                         f"epoch milliseconds or ISO-8601 strings")
    present = pc.is_valid(column).to_numpy(zero_copy_only=False)
    times = pa.array(ms.astype(np.int64), pa.int64(), mask=~(present & parsed)).cast(TIME_TYPE)
    return times, pa.array(present & ~parsed)
