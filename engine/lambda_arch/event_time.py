"""Which event times ingest accepts: the plausibility window of ``LambdaOptions.event_time_window``.

An event time far outside the stream's range is almost always a unit or clock mistake
(seconds given where milliseconds are expected land in January 1970; microseconds, or a
bad clock, land centuries ahead).  Stored, such a time would move the watermark, which
expires every id from the de-duplication index at once and moves the default "now" of
queries with it.  So the master log rejects it, with a reason, before anything is stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import SpecError

_MS_PER_HOUR = 3_600_000
_INT64 = np.iinfo(np.int64)


def _clip(value: float) -> int:
    return int(min(max(value, _INT64.min), _INT64.max))


@dataclass(frozen=True)
class EventTimeWindow:
    """The event times a deployment accepts; rows outside are rejected at ingest.

    For one ingest batch, with M the newest event time stored before it (none on an
    empty log) and ``now`` the wall clock, a row is rejected, first reason that applies:

    - ``"event_time more than <h> h ahead of the clock"`` when it lies more than
      ``max_ahead_hours`` after ``max(now, M)`` (year 3000; microseconds as milliseconds);
    - ``"event_time before <earliest>"`` when it lies before ``earliest`` (an ISO-8601
      UTC time; seconds given as milliseconds fall in 1970, before the default 2000);
    - ``"event_time more than <h> h behind the newest event"`` when it lies more than
      ``max_behind_hours`` before N, the newest of M and the batch's rows that passed the
      two checks above.

    ``None`` turns a check off.  Rejected rows never move the watermark.
    """

    max_ahead_hours: float | None = 24.0
    max_behind_hours: float | None = 24.0 * 365
    earliest: str | None = "2000-01-01T00:00:00Z"

    def __post_init__(self) -> None:
        for name in ("max_ahead_hours", "max_behind_hours"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise SpecError(f"EventTimeWindow.{name} must be None or a finite number of hours >= 0, got {value!r}")
        if self.earliest is not None:
            self.earliest_ms()

    def earliest_ms(self) -> int | None:
        """``earliest`` in epoch milliseconds (None when the check is off)."""
        if self.earliest is None:
            return None
        try:
            moment = datetime.fromisoformat(str(self.earliest).replace("Z", "+00:00"))
        except ValueError:
            raise SpecError(f"EventTimeWindow.earliest must be an ISO-8601 time, got {self.earliest!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)

    def reasons(self, times: np.ndarray, newest_stored: int | None, now_ms: int) -> pa.Array:
        """Per row (epoch-ms ``times``), the reason it is implausible, or null."""
        reasons = np.zeros(len(times), dtype=np.int8)  # 0: plausible
        texts = [None]
        if self.max_ahead_hours is not None:
            reference = now_ms if newest_stored is None else max(now_ms, newest_stored)
            texts.append(f"event_time more than {self.max_ahead_hours:g} h ahead of the clock")
            reasons[times > _clip(reference + self.max_ahead_hours * _MS_PER_HOUR)] = len(texts) - 1
        earliest = self.earliest_ms()
        if earliest is not None:
            texts.append(f"event_time before {self.earliest}")
            reasons[(reasons == 0) & (times < earliest)] = len(texts) - 1
        if self.max_behind_hours is not None:
            candidates = times[reasons == 0]
            newest = max([value for value in (newest_stored, int(candidates.max()) if len(candidates) else None)
                          if value is not None], default=None)
            if newest is not None:
                texts.append(f"event_time more than {self.max_behind_hours:g} h behind the newest event")
                limit = _clip(newest - self.max_behind_hours * _MS_PER_HOUR)
                reasons[(reasons == 0) & (times < limit)] = len(texts) - 1
        codes = pa.array(reasons.astype(np.int32), mask=reasons == 0)
        return pc.take(pa.array(texts, pa.string()), codes)

