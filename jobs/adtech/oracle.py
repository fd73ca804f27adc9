"""A plain-Python reference implementation of the ad-tech contract, for tests.

Deliberately independent of the engine: it validates, de-duplicates and numbers rows
one by one with dicts and loops (slow, obviously correct), and answers the three
queries by scanning its rows.  Tests compare every answer of the Lambda architecture
with the oracle's answer over the offsets the answer reports.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

_TYPES = {"view", "click", "purchase"}
_REQUIRED = ("event_id", "event_time", "event_type", "user_id", "advertiser_id", "cost", "revenue")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2})(?::?(\d{2}))?)?",
                  re.ASCII)
_HOUR_MS = 3_600_000


def iso_time_ms(text: str) -> int | None:
    """Epoch ms of an ISO-8601 string of the contract's grammar (see ``jobs/adtech/times.py``), else None."""
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(index)) for index in range(1, 7))
    zone_hours, zone_minutes = int(match.group(10) or 0), int(match.group(11) or 0)
    if zone_minutes > 59:
        return None
    offset = timedelta(hours=zone_hours, minutes=zone_minutes) * (-1 if match.group(9) == "-" else 1)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return None
    return (moment - _EPOCH) // timedelta(milliseconds=1) + int((match.group(7) or "").ljust(9, "0")[:3])


def _time_ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return (value - _EPOCH) // timedelta(milliseconds=1)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -2**63 <= value < 2**63 else None
    if isinstance(value, float):
        return math.floor(value) if math.isfinite(value) and abs(value) < 2.0 ** 63 else None
    if isinstance(value, str):
        return iso_time_ms(value)
    return None


class AdEventOracle:
    """Reference state: the stored rows (dicts with an ``offset``) in log order.

    It expects batches of the contract's column types (plus string event times) and
    applies the default event-time window of ``engine.lambda_arch.EventTimeWindow``
    (24 h ahead of ``max(now, watermark)``, not before 2000, a year behind the newest),
    with ``now_ms`` (default: the wall clock at each ingest).
    """

    def __init__(self, horizon_ms: int = 24 * 3_600_000, now_ms: int | None = None) -> None:
        self.horizon_ms = horizon_ms
        self.now_ms = now_ms
        self.rows: list[dict[str, Any]] = []
        self.newest_stored_time: dict[str, int] = {}
        self.watermark: int | None = None
        self.rejected = 0
        self.stored = 0

    def _valid(self, row: dict[str, Any]) -> bool:
        for name in _REQUIRED:
            if row.get(name) is None:
                return False
        if row["event_type"] not in _TYPES:
            return False
        if row["event_type"] != "purchase" and row.get("ad_id") is None:
            return False
        for money in ("cost", "revenue"):
            if not math.isfinite(row[money]) or row[money] < 0:
                return False
        return _time_ms(row["event_time"]) is not None

    def _plausible(self, rows: list[dict[str, Any]]) -> list[bool]:
        """The default event-time window over the valid rows of one batch."""
        now = self.now_ms if self.now_ms is not None else int(time.time() * 1000)
        ahead = max(now, self.watermark if self.watermark is not None else now) + 24 * _HOUR_MS
        earliest = (datetime(2000, 1, 1, tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)
        times = [_time_ms(row["event_time"]) for row in rows]
        first = [earliest <= t <= ahead for t in times]
        candidates = [t for t, ok in zip(times, first) if ok] + ([self.watermark] if self.watermark is not None else [])
        newest = max(candidates, default=None)
        return [ok and (newest is None or t >= newest - 365 * 24 * _HOUR_MS) for t, ok in zip(times, first)]

    def ingest(self, batch: pa.Table) -> dict[str, int]:
        """Process one ingest batch; returns accepted/duplicates/rejected counts."""
        cutoff = None if self.watermark is None else self.watermark - self.horizon_ms
        accepted = duplicates = rejected = 0
        newest = self.watermark
        rows = batch.to_pylist()
        valid = [row for row in rows if self._valid(row)]
        plausible = [row for row, ok in zip(valid, self._plausible(valid)) if ok]
        rejected = len(rows) - len(plausible)
        for row in plausible:
            time_ms = _time_ms(row["event_time"])
            seen = self.newest_stored_time.get(row["event_id"])
            if seen is not None and (cutoff is None or seen >= cutoff):
                duplicates += 1
                continue
            self.newest_stored_time[row["event_id"]] = max(seen, time_ms) if seen is not None else time_ms
            self._store(dict(row, event_time=time_ms, offset=self.stored))
            self.stored += 1
            accepted += 1
            newest = time_ms if newest is None else max(newest, time_ms)
        self.watermark = newest
        self.rejected += rejected
        return {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}

    def _store(self, row: dict[str, Any]) -> None:
        """Keep one stored row (with its ``offset``)."""
        self.rows.append(row)

    def _window(self, end_offset: int, first_minute: int, last_minute: int) -> list[dict[str, Any]]:
        return [row for row in self.rows[:end_offset]
                if first_minute <= row["event_time"] // 60_000 <= last_minute]

    def ads_shown(self, end_offset: int, first_minute: int, last_minute: int,
                  advertiser_id: int | None = None) -> int:
        """View events in the window among offsets below ``end_offset``."""
        return sum(1 for row in self._window(end_offset, first_minute, last_minute)
                   if row["event_type"] == "view" and (advertiser_id is None or row["advertiser_id"] == advertiser_id))

    def views_by_advertiser(self, end_offset: int, first_minute: int, last_minute: int) -> dict[int, int]:
        """View events in the window per advertiser (for top-k)."""
        counts: dict[int, int] = {}
        for row in self._window(end_offset, first_minute, last_minute):
            if row["event_type"] == "view":
                counts[row["advertiser_id"]] = counts.get(row["advertiser_id"], 0) + 1
        return counts

    def active_viewers(self, end_offset: int, first_minute: int, last_minute: int) -> int:
        """Distinct users with a view in the window."""
        return len({row["user_id"] for row in self._window(end_offset, first_minute, last_minute)
                    if row["event_type"] == "view"})

    def roi(self, end_offset: int) -> dict[int, tuple[float, float, float | None]]:
        """advertiser -> (spend, attributed revenue, ROI or None) over offsets below ``end_offset``."""
        rows = self.rows[:end_offset]
        spend: dict[int, float] = {}
        revenue: dict[int, float] = {}
        clicks: dict[tuple[int, int], list[int]] = {}
        for row in rows:
            spend[row["advertiser_id"]] = spend.get(row["advertiser_id"], 0.0) + row["cost"]
            if row["event_type"] == "click":
                clicks.setdefault((row["user_id"], row["advertiser_id"]), []).append(row["event_time"])
        for row in rows:
            if row["event_type"] != "purchase":
                continue
            times = clicks.get((row["user_id"], row["advertiser_id"]), [])
            if any(0 <= row["event_time"] - t <= 24 * 3_600_000 for t in times):
                revenue[row["advertiser_id"]] = revenue.get(row["advertiser_id"], 0.0) + row["revenue"]
        result = {}
        for advertiser in set(spend) | set(revenue):
            s, r = spend.get(advertiser, 0.0), revenue.get(advertiser, 0.0)
            result[advertiser] = (s, r, (r - s) / s if s != 0 else None)
        return result

    def latest_event_ms(self) -> int:
        """Newest stored event time (0 when nothing is stored)."""
        return self.watermark or 0


class AdEventTally(AdEventOracle):
    """The oracle for long streams: the same validation and de-duplication, but instead of
    the rows it keeps what the real-time queries over *all* stored rows need -- views per
    (advertiser, minute) and the set of viewers per minute -- and forgets ids whose stored
    time fell behind the horizon (they can never make a row a duplicate again).  Answers
    cover every stored row (``end_offset`` must be ``stored``); no ROI.
    """

    def __init__(self, horizon_ms: int = 24 * 3_600_000, now_ms: int | None = None) -> None:
        super().__init__(horizon_ms, now_ms)
        self.views: dict[tuple[int, int], int] = {}
        self.viewers: dict[int, set[int]] = {}
        self._pruned_at: int | None = None

    def _store(self, row: dict[str, Any]) -> None:
        if row["event_type"] == "view":
            minute = row["event_time"] // 60_000
            key = (row["advertiser_id"], minute)
            self.views[key] = self.views.get(key, 0) + 1
            self.viewers.setdefault(minute, set()).add(row["user_id"])

    def ingest(self, batch: pa.Table) -> dict[str, int]:
        """Process one ingest batch (see ``AdEventOracle.ingest``), then forget expired ids.

        A ``timestamp[ms]`` event-time column is read as its epoch milliseconds (the
        same values, without building a ``datetime`` per row)."""
        index = batch.schema.get_field_index("event_time")
        if index >= 0 and pa.types.is_timestamp(batch.schema.field(index).type) \
                and batch.schema.field(index).type.unit == "ms":
            batch = batch.set_column(index, "event_time", batch.column(index).cast(pa.int64()))
        counts = super().ingest(batch)
        if self.watermark is not None and (self._pruned_at is None
                                           or self.watermark - self._pruned_at >= max(1, self.horizon_ms // 8)):
            cutoff = self.watermark - self.horizon_ms
            self.newest_stored_time = {key: t for key, t in self.newest_stored_time.items() if t >= cutoff}
            self._pruned_at = self.watermark
        return counts

    def _all(self, end_offset: int) -> None:
        if end_offset != self.stored:
            raise ValueError(f"the tally answers over all {self.stored} stored rows, not the first {end_offset}")

    def ads_shown(self, end_offset: int, first_minute: int, last_minute: int,
                  advertiser_id: int | None = None) -> int:
        """View events in the window (over every stored row)."""
        return sum(self.views_by_advertiser(end_offset, first_minute, last_minute, advertiser_id).values())

    def views_by_advertiser(self, end_offset: int, first_minute: int, last_minute: int,
                            advertiser_id: int | None = None) -> dict[int, int]:
        """View events in the window per advertiser (over every stored row)."""
        self._all(end_offset)
        counts: dict[int, int] = {}
        for (advertiser, minute), views in self.views.items():
            if first_minute <= minute <= last_minute and advertiser_id in (None, advertiser):
                counts[advertiser] = counts.get(advertiser, 0) + views
        return counts

    def active_viewers(self, end_offset: int, first_minute: int, last_minute: int) -> int:
        """Distinct users with a view in the window (over every stored row)."""
        self._all(end_offset)
        users: set[int] = set()
        for minute, seen in self.viewers.items():
            if first_minute <= minute <= last_minute:
                users |= seen
        return len(users)

    def roi(self, end_offset: int) -> dict[int, tuple[float, float, float | None]]:
        """Not kept by the tally."""
        raise NotImplementedError("AdEventTally keeps no ROI; use AdEventOracle")
