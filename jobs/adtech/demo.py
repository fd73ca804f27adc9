"""The ad-tech Lambda demo: ``python -m jobs.adtech [--events N] [--rate R] [--dir DIR] [--batch-every S]``.

A producer streams generated ad events (``datasets.adevents``) at ``--rate`` events/s into
the master log of the ad-tech deployment (``jobs.adtech.app``); the speed layer (a pipeline on the embedded Ray cluster) keeps real-time
views; the batch layer recomputes the batch views with MapReduce every ``--batch-every``
seconds; once a second the demo prints the three queries' answers (with the offsets
they cover), the speed layer's freshness and throughput; at the end, a summary per
advertiser.  ``--dir`` keeps the master dataset: a second run continues from it (new
events start after the newest event stored, so they are not re-sends).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from datasets.adevents import AdEventSpec, generate_events


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jobs.adtech", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to produce (default 200000)")
    parser.add_argument("--rate", type=float, default=50_000, help="producer rate, events per second (default 50000)")
    parser.add_argument("--dir", type=Path, default=None, help="master dataset directory (kept; default: temporary)")
    parser.add_argument("--batch-every", type=float, default=3.0, help="seconds between batch recomputations")
    parser.add_argument("--batch-rows", type=int, default=0, help="events per ingest call (default: rate/10)")
    parser.add_argument("--shards", type=int, default=2, help="view shards (default 2)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    parser.add_argument("--executor", choices=["ray", "inline"], default="ray", help="ray (default) or inline (in this process, no Ray)")
    parser.add_argument("--top", type=int, default=10, help="advertisers in the final summary (default 10)")
    parser.add_argument("--ui", action="store_true",
                        help="serve a live status page on 127.0.0.1 (its URL, with a private token, is printed at start)")
    args = parser.parse_args(argv)
    if args.events < 0 or args.rate <= 0 or args.batch_every <= 0 or args.shards < 1:
        parser.error("--events must be >= 0 and --rate, --batch-every, --shards positive")
    return args


def _spec_for(args: argparse.Namespace, latest_ms: int, end_offset: int) -> AdEventSpec:
    """A stream that continues after what the directory already holds."""
    span_hours = max(1.0, args.events / 2_000_000 * 24)  # about 2 M events per simulated day
    if end_offset == 0:
        return AdEventSpec(events=args.events, seed=args.seed, span_hours=span_hours)
    start = datetime.fromtimestamp(latest_ms / 1000 + 60, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return AdEventSpec(events=args.events, seed=args.seed + end_offset % 65_521, span_hours=span_hours, start=start)


def _produce(lam: object, events: pa.Table, rate: float, batch_rows: int, done: threading.Event,
             acked: list[int]) -> None:
    started = time.perf_counter()
    for start in range(0, events.num_rows, batch_rows):
        due = started + start / rate
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        ack = lam.ingest(events.slice(start, batch_rows))  # type: ignore[attr-defined]
        acked[0] += ack.accepted
        acked[1] += ack.duplicates
        acked[2] += ack.rejected
    done.set()


def _status_line(lam: object, started: float, acked: list[int]) -> str:
    viewers = lam.active_viewers(minutes=5)  # type: ignore[attr-defined]
    shown = lam.ads_shown(hours=24, top_k=3)  # type: ignore[attr-defined]
    roi = lam.roi()  # type: ignore[attr-defined]
    top = ", ".join(f"{row['advertiser_id']}:{row['views']}" for row in shown.extra["top"].to_pylist())
    fresh = lam.freshness  # type: ignore[attr-defined]
    p50, p99 = fresh.percentile(50), fresh.percentile(99)
    elapsed = time.perf_counter() - started
    roi_text = "n/a" if roi.value is None else f"{roi.value:+.3f}"
    fresh_text = "-" if p50 is None else f"{p50 * 1000:.0f}/{p99 * 1000:.0f} ms"
    return (f"[{elapsed:6.1f}s] acked {acked[0]:>9,} (dup {acked[1]:,}, rej {acked[2]:,}) | "
            f"W={shown.batch_offset:,} H={shown.speed_offset:,} | active viewers 5m {viewers.value:,} | "
            f"ads shown 24h {shown.value:,} top {top} | ROI(W={roi.batch_offset:,}) {roi_text} | "
            f"fresh p50/p99 {fresh_text} | speed {fresh.visible_events / elapsed:,.0f} ev/s")


def _summary(lam: object, top: int) -> None:
    roi = lam.roi()  # type: ignore[attr-defined]
    shown = lam.ads_shown(hours=24 * 365, top_k=10_000)  # type: ignore[attr-defined]
    views = {row["advertiser_id"]: row["views"] for row in shown.extra["top"].to_pylist()}
    table = roi.extra["table"]
    order = pc.sort_indices(table, sort_keys=[("spend", "descending")])
    print(f"\nsummary per advertiser (batch view W={roi.batch_offset:,}; top {top} by spend of {table.num_rows}):")
    print(f"{'advertiser':>10} {'views':>9} {'spend':>12} {'attributed':>12} {'ROI':>9}")
    for row in table.take(order).slice(0, top).to_pylist():
        roi_text = "n/a" if row["roi"] is None else f"{row['roi']:+.3f}"
        print(f"{row['advertiser_id']:>10} {views.get(row['advertiser_id'], 0):>9,} {row['spend']:>12,.2f} "
              f"{row['attributed_revenue']:>12,.2f} {roi_text:>9}")
    overall = "n/a" if roi.value is None else f"{roi.value:+.3f}"
    print(f"{'all':>10} {shown.value:>9,} {roi.extra['spend']:>12,.2f} {roi.extra['attributed_revenue']:>12,.2f} "
          f"{overall:>9}")


def main(argv: list[str] | None = None) -> int:
    """Run the live demo; returns the process exit code."""
    args = _parse(argv)
    from engine.lambda_arch import LambdaOptions
    from jobs.adtech.app import AdTech

    started_ray = False
    if args.executor == "ray":
        import ray

        import engine

        started_ray = not ray.is_initialized()
        engine.connect(ui=args.ui)
    elif args.ui:
        from engine.ui import start_ui

        start_ui()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="adtech-"))
    try:
        lam = AdTech.start(directory, args.executor, LambdaOptions(shards=args.shards))
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        if started_ray:
            import engine

            engine.shutdown()
        return 2
    try:
        print(f"master dataset {directory}: {lam.end_offset:,} events stored, batch view W="
              f"{lam.snapshot[0]:,}")
        events = generate_events(_spec_for(args, lam.latest_event_time_ms, lam.end_offset))
        batch_rows = args.batch_rows or max(1_000, int(args.rate / 10))
        done, acked = threading.Event(), [0, 0, 0]
        lam.start_batch_schedule(args.batch_every)
        started = time.perf_counter()
        producer = threading.Thread(target=_produce, args=(lam, events, args.rate, batch_rows, done, acked),
                                    daemon=True)
        producer.start()
        while not done.wait(1.0):
            if lam.heal():
                print("the speed layer had crashed: rebuilt from the master log", flush=True)
            print(_status_line(lam, started, acked), flush=True)
        producer.join()
        lam.stop_batch_schedule()
        lam.wait_visible()
        print(_status_line(lam, started, acked))
        lam.recompute_batch()
        print(_status_line(lam, started, acked))
        runs = ", ".join(f"W={run['version']:,} in {run['elapsed_s']:.1f}s" for run in lam.batch_runs)
        print(f"batch recomputations: {runs or 'none'}")
        _summary(lam, args.top)
    finally:
        lam.close()
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
        if started_ray:
            import engine

            engine.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
