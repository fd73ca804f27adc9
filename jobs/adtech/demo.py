"""The ad-tech Lambda demo: ``python -m jobs.adtech [--events N] [--rate R] [--dir DIR] [--batch-every S]``.

A producer streams generated ad events (``datasets.adevents``) at ``--rate`` events/s into
the master log of the ad-tech deployment (``jobs.adtech.app``); the speed layer (a
pipeline on the embedded Ray cluster) keeps real-time views; the batch layer recomputes
the batch views with MapReduce every ``--batch-every`` seconds; once a second the demo
prints the three queries' answers (with the offsets they cover), the speed layer's
freshness and throughput; at the end, a summary per advertiser.  ``--dir`` keeps the
master dataset: a second run continues from it (new events start after the newest event
stored, so they are not re-sends).

Every option is checked first (a bad one: a one-line error, exit status 2).  A failure
while the demo runs -- the producer's ingest, the batch layer giving up, a view -- ends
it with a one-line error and exit status 1.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, NoReturn

import pyarrow as pa
import pyarrow.compute as pc

from datasets.adevents import AdEventSpec, generate_events

MAX_EVENTS = 20_000_000  # the stream is generated in memory first
MAX_SHARDS = 64


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on standard error (exit status 2), no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see --help)\n")


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"from {low:,} to {high:,}" if high is not None else f">= {low:,}"
            raise argparse.ArgumentTypeError(f"must be an integer {bounds}, got {value}")
        return value

    return parse


def _positive(high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(value) and 0 < value <= high):
            raise argparse.ArgumentTypeError(f"must be a number > 0 and <= {high:,.0f}, got {text}")
        return value

    return parse


def _directory(text: str) -> Path:
    """A directory that exists or can be created, and that this user can write."""
    path = Path(text).expanduser()
    try:
        existing = next(candidate for candidate in (path, *path.parents) if candidate.exists())
        if existing == path and not path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is not a directory")
        if not existing.is_dir():
            raise argparse.ArgumentTypeError(f"cannot create {text!r}: {str(existing)!r} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"{str(existing)!r} is not writable")
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot use {text!r}: {error.strerror or error}") from None
    return path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m jobs.adtech", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=_integer(0, MAX_EVENTS), default=200_000,
                        help=f"events to produce, 0 to {MAX_EVENTS:,} (default 200000)")
    parser.add_argument("--rate", type=_positive(1e9), default=50_000,
                        help="producer rate, events per second (default 50000)")
    parser.add_argument("--dir", type=_directory, default=None,
                        help="master dataset directory (kept; default: a new private temporary one)")
    parser.add_argument("--batch-every", type=_positive(86_400), default=3.0,
                        help="seconds between batch recomputations (default 3)")
    parser.add_argument("--batch-rows", type=_integer(1), default=None,
                        help="events per ingest call (default: rate/10, at least 1000)")
    parser.add_argument("--shards", type=_integer(1, MAX_SHARDS), default=2, help="view shards (default 2)")
    parser.add_argument("--seed", type=_integer(0, 2**32 - 1), default=7, help="generator seed (default 7)")
    parser.add_argument("--executor", choices=["ray", "inline"], default="ray",
                        help="ray (default) or inline (in this process, no Ray)")
    parser.add_argument("--top", type=_integer(0), default=10, help="advertisers in the final summary (default 10)")
    parser.add_argument("--ui", action="store_true",
                        help="serve a live status page on 127.0.0.1 (its URL, with a private token, is printed at start)")
    return parser.parse_args(argv)


def _spec_for(args: argparse.Namespace, latest_ms: int, end_offset: int) -> AdEventSpec:
    """A stream that continues after what the directory already holds."""
    span_hours = max(1.0, args.events / 2_000_000 * 24)  # about 2 M events per simulated day
    if end_offset == 0:
        return AdEventSpec(events=args.events, seed=args.seed, span_hours=span_hours)
    start = datetime.fromtimestamp(latest_ms / 1000 + 60, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return AdEventSpec(events=args.events, seed=args.seed + end_offset % 65_521, span_hours=span_hours, start=start)


class Producer:
    """Ingests ``events`` at ``rate`` events/s in ``batch_rows`` slices on a background
    thread.  ``finished`` is set when it ends: all sent, stopped, or failed (``error``);
    ``acked`` sums the acknowledgements (accepted, duplicates, rejected)."""

    def __init__(self, lam: Any, events: pa.Table, rate: float, batch_rows: int) -> None:
        self._lam, self._events, self._rate, self._batch_rows = lam, events, rate, batch_rows
        self.acked = [0, 0, 0]
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="adtech-producer", daemon=True)

    def start(self) -> None:
        """Start producing."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the ingest in progress and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            started = time.perf_counter()
            for start in range(0, self._events.num_rows, self._batch_rows):
                pause = started + start / self._rate - time.perf_counter()
                stopped = self._stop.wait(pause) if pause > 0 else self._stop.is_set()
                if stopped:
                    return
                ack = self._lam.ingest(self._events.slice(start, self._batch_rows))
                self.acked[0] += ack.accepted
                self.acked[1] += ack.duplicates
                self.acked[2] += ack.rejected
        except BaseException as error:  # reported by the demo's main thread
            self.error = error
        finally:
            self.finished.set()


def _status_line(lam: Any, started: float, acked: list[int]) -> str:
    viewers = lam.active_viewers(minutes=5)
    shown = lam.ads_shown(hours=24, top_k=3)
    roi = lam.roi()
    top = ", ".join(f"{row['advertiser_id']}:{row['views']}" for row in shown.extra["top"].to_pylist())
    fresh = lam.freshness
    p50, p99 = fresh.percentile(50), fresh.percentile(99)
    elapsed = time.perf_counter() - started
    roi_text = "n/a" if roi.value is None else f"{roi.value:+.3f}"
    fresh_text = "-" if p50 is None else f"{p50 * 1000:.0f}/{p99 * 1000:.0f} ms"
    return (f"[{elapsed:6.1f}s] acked {acked[0]:>9,} (dup {acked[1]:,}, rej {acked[2]:,}) | "
            f"W={shown.batch_offset:,} H={shown.speed_offset:,} | active viewers 5m {viewers.value:,} | "
            f"ads shown 24h {shown.value:,} top {top} | ROI(W={roi.batch_offset:,}) {roi_text} | "
            f"fresh p50/p99 {fresh_text} | speed {fresh.visible_events / elapsed:,.0f} ev/s")


def _summary(lam: Any, top: int) -> None:
    roi = lam.roi()
    shown = lam.ads_shown(hours=24 * 365, top_k=10_000)
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


class _StartError(Exception):
    """The deployment could not be opened (a usage problem: exit status 2)."""


class _RunError(Exception):
    """The demo failed while running (exit status 1)."""


def _options(args: argparse.Namespace) -> Any:
    from engine.lambda_arch import LambdaOptions

    return LambdaOptions(shards=args.shards)


def _demo(lam: Any, args: argparse.Namespace, directory: Path) -> None:
    from engine.common.bad_records import describe_error

    print(f"master dataset {directory}: {lam.end_offset:,} events stored, batch view W={lam.snapshot[0]:,}")
    events = generate_events(_spec_for(args, lam.latest_event_time_ms, lam.end_offset))
    batch_rows = args.batch_rows or max(1_000, int(args.rate / 10))
    lam.start_batch_schedule(args.batch_every)
    started = time.perf_counter()
    producer = Producer(lam, events, args.rate, batch_rows)
    producer.start()
    try:
        while not producer.finished.wait(1.0):
            if lam.heal():
                print("the speed layer had crashed: rebuilt from the master log", flush=True)
            print(_status_line(lam, started, producer.acked), flush=True)
    finally:
        producer.stop()
    if producer.error is not None:
        raise _RunError(f"the event producer failed: {describe_error(producer.error).one_line()}") \
            from producer.error
    lam.stop_batch_schedule()
    lam.wait_visible()
    print(_status_line(lam, started, producer.acked))
    lam.recompute_batch()
    print(_status_line(lam, started, producer.acked))
    runs = ", ".join(f"W={run['version']:,} in {run['elapsed_s']:.1f}s" for run in lam.batch_runs)
    print(f"batch recomputations: {runs or 'none'}")
    _summary(lam, args.top)


def _run(args: argparse.Namespace) -> None:
    from jobs.adtech.app import AdTech

    started_ray = False
    directory = args.dir or Path(tempfile.mkdtemp(prefix="adtech-"))
    try:
        if args.executor == "ray":
            import ray

            import engine

            started_ray = not ray.is_initialized()
            engine.connect(ui=args.ui)
        elif args.ui:
            from engine.ui import start_ui

            start_ui()
        try:
            lam = AdTech.start(directory, args.executor, _options(args))
        except (RuntimeError, ValueError, OSError) as error:
            raise _StartError(str(error)) from error
        try:
            _demo(lam, args, directory)
        finally:
            lam.close()
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
        if started_ray:
            import engine

            engine.shutdown()


def main(argv: list[str] | None = None) -> int:
    """Run the live demo; returns the process exit code (2: bad usage, 1: the run failed)."""
    args = _parse(argv)
    try:
        _run(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except _StartError as error:
        print(f"error: {_first_line(str(error))}", file=sys.stderr)
        return 2
    except _RunError as error:
        print(f"error: {_first_line(str(error))}", file=sys.stderr)
        return 1
    except Exception as error:  # anything else the run met: one line, not a traceback
        from engine.common.bad_records import describe_error

        print(f"error: {describe_error(error).one_line()}", file=sys.stderr)
        return 1
    return 0


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


if __name__ == "__main__":
    from engine.runtime.process_exit import exit_process

    exit_process(main())
