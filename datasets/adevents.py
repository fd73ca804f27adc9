"""Deterministic ad-tech event streams (views, clicks, purchases) for the Lambda job
(``jobs.adtech``, whose event contract defines the schema).

``python -m datasets.adevents --events N --out DIR`` writes the stream, in arrival order,
as ``part-NNNNN.parquet`` files; without ``--out`` it prints a summary.  The same
``--seed`` and ``--events`` always give the same rows in the same order.

Shape of the stream (all vectorized with numpy, a million events take about a second):

- many users (Zipf-like activity) and ads, a few hundred advertisers; views >> clicks >>
  purchases; most purchases follow a click by the same user on an ad of the same
  advertiser (some within 24 h, some later, some without any click);
- a diurnal event rate over the simulated span (busier afternoons, quiet nights);
- arrival order is event time plus a small jitter; a few events arrive *late* (minutes to
  hours after their event time); a few are *re-sent* (same ``event_id``, same content),
  mostly soon after the original and a handful more than a day later;
- a few *malformed* rows: a missing field, an unknown ``event_type``, negative money.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.adtech.events import EVENT_SCHEMA, EVENT_TYPES  # the contract lives with the job

_MS_PER_MINUTE = 60_000
_MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class AdEventSpec:
    """What stream to generate.  Rates are fractions of ``events``."""

    events: int = 100_000
    seed: int = 7
    users: int = 50_000
    ads: int = 5_000
    advertisers: int = 300
    start: str = "2026-01-05T00:00:00Z"
    span_hours: float = 48.0
    click_rate: float = 0.04
    purchase_rate: float = 0.006
    duplicate_rate: float = 0.01
    late_rate: float = 0.005
    malformed_rate: float = 0.001

    def start_ms(self) -> int:
        """The start of the simulated span, in epoch milliseconds (UTC)."""
        moment = datetime.fromisoformat(self.start.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return int(moment.timestamp() * 1000)

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        if self.events < 0:
            raise ValueError(f"events must be >= 0, got {self.events}")
        for name in ("users", "ads", "advertisers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.span_hours <= 0:
            raise ValueError(f"span_hours must be > 0, got {self.span_hours}")
        for name in ("click_rate", "purchase_rate", "duplicate_rate", "late_rate", "malformed_rate"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {getattr(self, name)}")


def _event_ids(numbers: np.ndarray, seed: int) -> pa.Array:
    """Fixed-width ids ``e<seed hex 4><number hex 12>`` built as one Arrow string buffer."""
    width = 17
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    chars = np.empty((len(numbers), width), dtype=np.uint8)
    chars[:, 0] = ord("e")
    for position in range(4):
        chars[:, 1 + position] = digits[(seed >> (4 * (3 - position))) & 0xF]
    values = numbers.astype(np.uint64)
    for position in range(12):
        shift = np.uint64(4 * (11 - position))
        chars[:, 5 + position] = digits[((values >> shift) & np.uint64(0xF)).astype(np.int64)]
    offsets = np.arange(0, (len(numbers) + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(
        len(numbers), pa.py_buffer(offsets.tobytes()), pa.py_buffer(chars.tobytes())
    )


def _diurnal_times(rng: np.random.Generator, count: int, spec: AdEventSpec) -> np.ndarray:
    """Event times (epoch ms) drawn from a day-periodic rate over the span."""
    minutes = max(1, int(spec.span_hours * 60))
    hour_of_day = (np.arange(minutes) / 60.0) % 24.0
    weights = 1.0 + 0.7 * np.sin(2 * np.pi * (hour_of_day - 9.0) / 24.0)
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    minute = np.searchsorted(cumulative, rng.random(count), side="right")
    minute = np.minimum(minute, minutes - 1)
    return spec.start_ms() + minute * _MS_PER_MINUTE + rng.integers(0, _MS_PER_MINUTE, count)


def _zipf_choice(rng: np.random.Generator, count: int, size: int, exponent: float) -> np.ndarray:
    """Integers in [0, size) with Zipf-like frequencies (rank r has weight r**-exponent)."""
    weights = 1.0 / np.arange(1, size + 1) ** exponent
    cumulative = np.cumsum(weights)
    cumulative /= cumulative[-1]
    ranks = np.minimum(np.searchsorted(cumulative, rng.random(count), side="right"), size - 1)
    # Scatter ranks over ids so that popular ids are not simply 0, 1, 2, ...
    permutation = np.random.default_rng(size).permutation(size)
    return permutation[ranks]


def _base_events(rng: np.random.Generator, count: int, spec: AdEventSpec) -> dict[str, np.ndarray]:
    """Clean, unique events (columns as numpy arrays), not yet in arrival order."""
    kind = rng.random(count)
    is_purchase = kind < spec.purchase_rate
    is_click = (~is_purchase) & (kind < spec.purchase_rate + spec.click_rate)
    times = _diurnal_times(rng, count, spec)
    users = _zipf_choice(rng, count, spec.users, 0.8).astype(np.int64)
    ads = _zipf_choice(rng, count, spec.ads, 0.9).astype(np.int64)
    ad_advertiser = np.random.default_rng(spec.seed + 1).integers(0, spec.advertisers, spec.ads)
    advertisers = ad_advertiser[ads].astype(np.int64)
    # Most purchases follow a click: same user and advertiser, some hours later.
    clicks = np.flatnonzero(is_click)
    purchases = np.flatnonzero(is_purchase)
    if len(clicks) and len(purchases):
        follows = rng.random(len(purchases)) < 0.75
        chosen = purchases[follows]
        source = clicks[rng.integers(0, len(clicks), len(chosen))]
        users[chosen] = users[source]
        advertisers[chosen] = advertisers[source]
        delay = np.minimum(rng.exponential(5 * _MS_PER_HOUR, len(chosen)), 36 * _MS_PER_HOUR).astype(np.int64)
        span_end = spec.start_ms() + int(spec.span_hours * _MS_PER_HOUR) - 1
        times[chosen] = np.minimum(times[source] + delay, span_end)
    cost = np.where(is_click, rng.uniform(0.05, 2.0, count), rng.uniform(0.0005, 0.01, count))
    cost = np.where(is_purchase, 0.0, np.round(cost, 4))
    revenue = np.where(is_purchase, np.round(rng.lognormal(3.5, 0.8, count), 2), 0.0)
    event_type = np.where(is_purchase, 2, np.where(is_click, 1, 0)).astype(np.int8)
    return {
        "number": np.arange(count, dtype=np.int64),
        "event_time": times.astype(np.int64),
        "event_type": event_type,
        "user_id": users,
        "ad_id": ads,
        "ad_valid": ~is_purchase,
        "advertiser_id": advertisers,
        "cost": cost,
        "revenue": revenue,
    }


def _arrival_order(rng: np.random.Generator, base: dict[str, np.ndarray], spec: AdEventSpec,
                   resends: int) -> np.ndarray:
    """Row indices (into base, with ``resends`` re-sent copies) in arrival order."""
    count = len(base["event_time"])
    arrival = base["event_time"] + rng.integers(0, 2_000, count)
    late = rng.random(count) < spec.late_rate
    arrival[late] += rng.integers(5 * _MS_PER_MINUTE, 6 * _MS_PER_HOUR, int(late.sum()))
    resent = np.sort(rng.choice(count, size=min(resends, count), replace=False)) if count else np.zeros(0, np.int64)
    resend_delay = rng.integers(1_000, 20 * _MS_PER_MINUTE, len(resent))
    much_later = rng.random(len(resent)) < 0.05
    resend_delay[much_later] = rng.integers(25 * _MS_PER_HOUR, 30 * _MS_PER_HOUR, int(much_later.sum()))
    rows = np.concatenate([np.arange(count), resent])
    arrivals = np.concatenate([arrival, arrival[resent] + resend_delay])
    return rows[np.argsort(arrivals, kind="stable")]


def _malform(rng: np.random.Generator, table: pa.Table, rate: float) -> pa.Table:
    """Break a few rows: null a required field, unknown type, or negative money."""
    count = table.num_rows
    broken = np.flatnonzero(rng.random(count) < rate)
    if len(broken) == 0:
        return table
    how = rng.integers(0, 4, len(broken))
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}

    def patched(name: str, rows: np.ndarray, value: object) -> None:
        mask = np.zeros(count, dtype=bool)
        mask[rows] = True
        replacement = pa.scalar(value, type=columns[name].type)
        columns[name] = pc.if_else(pa.array(mask), replacement, columns[name])

    patched("user_id", broken[how == 0], None)
    patched("event_time", broken[how == 1], None)
    patched("event_type", broken[how == 2], "hover")
    patched("cost", broken[how == 3], -1.0)
    return pa.table(columns, schema=table.schema)


def generate_events(spec: AdEventSpec) -> pa.Table:
    """The whole stream as one table in arrival order (schema ``EVENT_SCHEMA``)."""
    spec.validate()
    rng = np.random.default_rng(spec.seed)
    unique = max(0, int(round(spec.events / (1.0 + spec.duplicate_rate))))
    base = _base_events(rng, unique, spec)
    order = _arrival_order(rng, base, spec, spec.events - unique)[: spec.events]
    table = pa.table(
        {
            "event_id": _event_ids(base["number"][order], spec.seed),
            "event_time": pa.array(base["event_time"][order], pa.timestamp("ms", tz="UTC")),
            "event_type": pa.DictionaryArray.from_arrays(
                pa.array(base["event_type"][order], pa.int8()), pa.array(EVENT_TYPES)
            ).cast(pa.string()),
            "user_id": pa.array(base["user_id"][order], pa.int64()),
            "ad_id": pa.array(base["ad_id"][order], pa.int64(), mask=~base["ad_valid"][order]),
            "advertiser_id": pa.array(base["advertiser_id"][order], pa.int64()),
            "cost": pa.array(base["cost"][order], pa.float64()),
            "revenue": pa.array(base["revenue"][order], pa.float64()),
        },
        schema=EVENT_SCHEMA,
    )
    return _malform(rng, table, spec.malformed_rate)


def iter_event_batches(spec: AdEventSpec, batch_rows: int) -> Iterator[pa.Table]:
    """The stream of ``generate_events(spec)`` cut into tables of ``batch_rows`` rows."""
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
    table = generate_events(spec)
    for start in range(0, table.num_rows, batch_rows):
        yield table.slice(start, batch_rows)


def summarize(table: pa.Table) -> dict[str, object]:
    """Counts by type, distinct ids/users/advertisers and the event-time range."""
    types = pc.value_counts(table.column("event_type")).to_pylist()
    times = table.column("event_time")
    return {
        "rows": table.num_rows,
        "by_type": {str(item["values"]): int(item["counts"]) for item in types},
        "distinct_event_ids": pc.count_distinct(table.column("event_id")).as_py(),
        "distinct_users": pc.count_distinct(table.column("user_id")).as_py(),
        "distinct_advertisers": pc.count_distinct(table.column("advertiser_id")).as_py(),
        "first_time": str(pc.min(times).as_py()),
        "last_time": str(pc.max(times).as_py()),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: generate a stream and write it as Parquet parts or print a summary."""
    parser = argparse.ArgumentParser(prog="python -m datasets.adevents", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="number of events (rows) to generate")
    parser.add_argument("--seed", type=int, default=7, help="random seed (same seed, same stream)")
    parser.add_argument("--advertisers", type=int, default=300, help="number of advertisers")
    parser.add_argument("--span-hours", type=float, default=48.0, help="simulated event-time span")
    parser.add_argument("--batch", type=int, default=100_000, help="rows per output part")
    parser.add_argument("--out", type=Path, default=None, help="directory for part-NNNNN.parquet files")
    args = parser.parse_args(argv)
    spec = AdEventSpec(events=args.events, seed=args.seed, advertisers=args.advertisers, span_hours=args.span_hours)
    try:
        spec.validate()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.out is None:
        for key, value in summarize(generate_events(spec)).items():
            print(f"{key}: {value}")
        return 0
    import pyarrow.parquet as pq

    args.out.mkdir(parents=True, exist_ok=True)
    for number, batch in enumerate(iter_event_batches(spec, args.batch)):
        pq.write_table(batch, args.out / f"part-{number:05d}.parquet")
    print(f"wrote {spec.events} events to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
