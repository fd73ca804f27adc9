"""``python -m bench lambda``: Lambda architecture ingest, freshness, queries and batch recomputation.

Phases (events are generated before any timing starts):

1. **ingest** -- ``--events`` events in ``--batch-rows`` batches into the durable log plus
   the speed layer (pipeline on Ray): the first half as fast as the producer can with no
   batch run, the second half paced at ``--rate`` while the batch layer recomputes back
   to back; reports events/s acknowledged and
   visible, freshness (ack -> visible in ``ads_shown``) p50/p99 and ``ads_shown`` query
   latency p50/p99 measured by a querying thread during the load.
2. **batch** -- a fresh log of ``--batch-events`` events; one batch recomputation with the
   engine's MapReduce on Ray and inline, against the same views computed by Polars and
   by DuckDB (2 threads), the peers, from the same segment files; reports seconds, ratios
   and whether the answers agree.

Writes ``bench/results/lambda.json`` and ``bench/results/lambda.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench lambda", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=6_000_000, help="events for the ingest phase (default 6M)")
    parser.add_argument("--batch-rows", type=int, default=100_000, help="events per ingest call (default 100k)")
    parser.add_argument("--batch-events", type=int, default=10_000_000,
                        help="events for the batch-recomputation phase (default 10M; 0 skips it)")
    parser.add_argument("--shards", type=int, default=2, help="view shards (default 2)")
    parser.add_argument("--rate", type=float, default=500_000,
                        help="producer rate (events/s) while the batch layer recomputes (default 500000; 0: max)")
    parser.add_argument("--feed-capacity", type=int, default=4, help="speed-layer feed capacity in batches")
    parser.add_argument("--batch-workers", type=int, default=1,
                        help="MapReduce workers (one task slot each) of the batch runs during the ingest phase "
                             "(default 1: one core for the batch layer, one for ingest and serving; 0: "
                             "LambdaOptions' default, one worker with a slot per CPU)")
    parser.add_argument("--batch-nice", type=int, default=None,
                        help="OS nice steps of the batch layer's work (default: LambdaOptions' default, 19; 0: off)")
    parser.add_argument("--switch-interval", type=float, default=0.001,
                        help="sys.setswitchinterval for the driver (default 0.001 s; Python's is 0.005)")
    parser.add_argument("--skip-local", action="store_true", help="skip the inline batch run of phase 2")
    parser.add_argument("--batch-repeat", type=int, default=3,
                        help="rounds of the batch phase, each running the engine and its peers in turn; the "
                             "medians are reported (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for lambda.json / lambda.png")
    return parser.parse_args(argv)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "count": 0}
    return {"p50_ms": float(np.percentile(values, 50) * 1000), "p99_ms": float(np.percentile(values, 99) * 1000),
            "count": len(values)}


def _ingest_run(lam: Any, events: Any, batch_rows: int, query_latencies: list[float],
                rate: float | None = None) -> dict[str, Any]:
    """Ingest all ``events`` (paced at ``rate`` events/s, or as fast as possible); a thread
    queries ads_shown meanwhile.  Returns rates."""
    stop = threading.Event()

    def query_loop() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            lam.ads_shown(hours=24)
            query_latencies.append(time.perf_counter() - started)
            time.sleep(0.01)

    querier = threading.Thread(target=query_loop, daemon=True)
    visible_before = lam.freshness.visible_events
    started = time.perf_counter()
    querier.start()
    for start in range(0, events.num_rows, batch_rows):
        if rate:
            pause = started + start / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        lam.ingest(events.slice(start, batch_rows))
    acked = time.perf_counter()
    lam.wait_visible(timeout_s=600)
    visible = time.perf_counter()
    stop.set()
    querier.join()
    stored = lam.freshness.visible_events - visible_before
    return {"events": events.num_rows, "stored": stored, "ingest_s": acked - started, "visible_s": visible - started,
            "ingest_events_per_s": events.num_rows / (acked - started),
            "visible_events_per_s": events.num_rows / (visible - started)}


def phase_ingest(args: argparse.Namespace) -> dict[str, Any]:
    """Ingest + speed layer alone, then while the batch layer recomputes continuously."""
    from datasets.adevents import AdEventSpec, generate_events
    from engine.lambda_arch import LambdaOptions
    from jobs.adtech import AdTech

    half = args.events // 2
    span_hours = max(2.0, args.events / 5_000_000 * 24)
    print(f"generating {args.events:,} events ...", flush=True)
    events = generate_events(AdEventSpec(events=args.events, span_hours=span_hours, seed=3))
    directory = Path(tempfile.mkdtemp(prefix="bench-lambda-"))
    result: dict[str, Any] = {}
    try:
        nice = {} if args.batch_nice is None else {"batch_nice": args.batch_nice}
        lam = AdTech.start(directory, "ray", LambdaOptions(shards=args.shards, batch_workers=args.batch_workers or None,
                                                           feed_capacity=args.feed_capacity, **nice))
        lam.ingest(events.slice(0, 1_000))  # warm the pipeline replica and shards
        lam.wait_visible()
        lam.freshness.latencies_s.clear()
        idle_queries: list[float] = []
        alone = _ingest_run(lam, events.slice(1_000, half - 1_000), args.batch_rows, idle_queries)
        alone["freshness"] = {"p50_ms": (lam.freshness.percentile(50) or 0) * 1000,
                              "p99_ms": (lam.freshness.percentile(99) or 0) * 1000}
        alone["ads_shown_query"] = _percentiles(idle_queries)
        print(f"ingest alone: {alone['ingest_events_per_s']:,.0f} ev/s acked, "
              f"{alone['visible_events_per_s']:,.0f} ev/s visible, freshness {alone['freshness']}, "
              f"queries {alone['ads_shown_query']}", flush=True)
        lam.freshness.latencies_s.clear()
        stop_batches = threading.Event()
        batch_times: list[dict[str, float]] = []

        def batch_loop() -> None:
            while not stop_batches.is_set():
                started = time.perf_counter()
                version = lam.recompute_batch()
                batch_times.append({"version": version, "elapsed_s": time.perf_counter() - started})

        batcher = threading.Thread(target=batch_loop, daemon=True)
        batcher.start()
        loaded_queries: list[float] = []
        loaded = _ingest_run(lam, events.slice(half), args.batch_rows, loaded_queries, args.rate)
        loaded["target_rate"] = args.rate
        stop_batches.set()
        batcher.join()
        loaded["freshness"] = {"p50_ms": (lam.freshness.percentile(50) or 0) * 1000,
                               "p99_ms": (lam.freshness.percentile(99) or 0) * 1000}
        loaded["ads_shown_query"] = _percentiles(loaded_queries)
        loaded["batch_recomputations"] = batch_times
        print(f"ingest at {args.rate:,.0f} ev/s target while batch recomputes: "
              f"{loaded['ingest_events_per_s']:,.0f} ev/s acked, "
              f"{loaded['visible_events_per_s']:,.0f} ev/s visible, freshness {loaded['freshness']}, "
              f"queries {loaded['ads_shown_query']}, batch runs {len(batch_times)}", flush=True)
        quiet: list[float] = []
        for _ in range(300):
            started = time.perf_counter()
            lam.ads_shown(hours=24)
            quiet.append(time.perf_counter() - started)
        result = {"alone": alone, "during_batch": loaded, "ads_shown_query_quiet": _percentiles(quiet),
                  "batch_nice": LambdaOptions(**nice).batch_nice}
        print(f"ads_shown query, no load: {result['ads_shown_query_quiet']}", flush=True)
        lam.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def _polars_views(log_dir: Path, version: int) -> dict[str, Any]:
    """The peer: the same batch views with Polars over the same segment files."""
    import polars as pl

    started = time.perf_counter()
    files = sorted(str(path) for path in (log_dir / "log").glob("seg-*.arrow"))
    frame = pl.concat([pl.read_ipc(file, columns=["offset", "event_time", "event_type", "user_id",
                                                  "advertiser_id", "cost", "revenue"])
                       for file in files]).filter(pl.col("offset") < version)
    frame = frame.with_columns((pl.col("event_time").dt.epoch("ms") // 60_000).alias("minute"),
                               pl.col("event_time").dt.epoch("ms").alias("time_ms"))
    counts = frame.group_by(["advertiser_id", "minute"]).agg(
        (pl.col("event_type") == "view").sum().alias("views"), pl.col("cost").sum().alias("spend"))
    viewers = frame.filter(pl.col("event_type") == "view").select(["minute", "user_id"]).unique()
    clicks = frame.filter(pl.col("event_type") == "click").select(
        ["user_id", "advertiser_id", pl.col("time_ms").alias("click_ms")]).sort("click_ms")
    purchases = frame.filter(pl.col("event_type") == "purchase").select(
        ["user_id", "advertiser_id", "time_ms", "revenue"]).sort("time_ms")
    joined = purchases.join_asof(clicks, left_on="time_ms", right_on="click_ms", by=["user_id", "advertiser_id"],
                                 strategy="backward", tolerance=24 * 3_600_000)
    attributed = joined.filter(pl.col("click_ms").is_not_null()).group_by(["user_id", "advertiser_id"]).agg(
        pl.col("revenue").sum().alias("attributed_revenue"))
    elapsed = time.perf_counter() - started
    return {"elapsed_s": elapsed, "views": int(counts["views"].sum()), "viewer_pairs": viewers.height,
            "attributed_revenue": float(attributed["attributed_revenue"].sum())}


def _duckdb_views(log_dir: Path, version: int) -> dict[str, Any]:
    """The second peer: the same batch views in DuckDB (2 threads) over the same segment
    files, read with pyarrow and scanned by DuckDB in place (ASOF JOIN for attribution)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.ipc as ipc

    started = time.perf_counter()
    columns = ["offset", "event_time", "event_type", "user_id", "advertiser_id", "cost", "revenue"]
    events = pa.concat_tables([ipc.open_file(str(path)).read_all().select(columns)
                               for path in sorted((log_dir / "log").glob("seg-*.arrow"))])
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("events", events)
    con.execute(f"""CREATE TEMP TABLE e AS SELECT event_type, user_id, advertiser_id, cost, revenue,
                    epoch_ms(event_time) AS time_ms FROM events WHERE "offset" < {int(version)}""")
    views, _spend = con.execute("""SELECT sum(views), sum(spend) FROM (SELECT advertiser_id, time_ms // 60000 AS minute,
                                   sum((event_type = 'view')::BIGINT) AS views, sum(cost) AS spend
                                   FROM e GROUP BY ALL)""").fetchone()
    viewer_pairs = con.execute("""SELECT count(*) FROM (SELECT DISTINCT time_ms // 60000, user_id FROM e
                                  WHERE event_type = 'view')""").fetchone()[0]
    attributed = con.execute("""SELECT sum(revenue) FROM (
        SELECT p.user_id, p.advertiser_id, sum(p.revenue) AS revenue
        FROM (SELECT user_id, advertiser_id, time_ms, revenue FROM e WHERE event_type = 'purchase') p
        ASOF JOIN (SELECT user_id, advertiser_id, time_ms AS click_ms FROM e WHERE event_type = 'click') c
          ON p.user_id = c.user_id AND p.advertiser_id = c.advertiser_id AND p.time_ms >= c.click_ms
        WHERE p.time_ms - c.click_ms <= 86400000 GROUP BY ALL)""").fetchone()[0]
    elapsed = time.perf_counter() - started
    con.close()
    return {"elapsed_s": elapsed, "views": int(views or 0), "viewer_pairs": int(viewer_pairs),
            "attributed_revenue": float(attributed or 0.0)}


def _same_answers(engine_views: dict[str, Any], peer: dict[str, Any]) -> bool:
    return (engine_views["views"] == peer["views"] and engine_views["viewer_pairs"] == peer["viewer_pairs"]
            and abs(engine_views["attributed_revenue"] - peer["attributed_revenue"])
            < 1e-6 * max(1.0, abs(peer["attributed_revenue"])))


def phase_batch(args: argparse.Namespace) -> dict[str, Any]:
    """One batch recomputation of ``--batch-events`` events: engine on Ray, inline, and Polars."""
    import pyarrow.compute as pc

    from datasets.adevents import AdEventSpec, generate_events
    from engine.lambda_arch import LambdaOptions
    from engine.lambda_arch.batch_layer import compute_batch_views, view_schemas
    from engine.lambda_arch.log import MasterLog
    from jobs.adtech import CONTRACT, adtech_architecture

    print(f"generating {args.batch_events:,} events for the batch phase ...", flush=True)
    events = generate_events(AdEventSpec(events=args.batch_events, span_hours=48, seed=5))
    directory = Path(tempfile.mkdtemp(prefix="bench-lambda-batch-"))
    result: dict[str, Any] = {"events": args.batch_events}
    spec = adtech_architecture(directory, LambdaOptions(batch_reducers=4))
    schemas = view_schemas(spec)
    try:
        with MasterLog(directory, CONTRACT) as log:
            started = time.perf_counter()
            for start in range(0, events.num_rows, 200_000):
                log.ingest(events.slice(start, 200_000))
            result["log_ingest_s"] = time.perf_counter() - started
            version = log.end_offset
            del events
            runs = [("ray", "engine_ray")] + ([] if args.skip_local else [("inline", "engine_inline")])
            peers = (("polars", _polars_views), ("duckdb", _duckdb_views))
            times: dict[str, list[float]] = {name: [] for name in [n for _, n in runs] + [p for p, _ in peers]}
            for round_number in range(max(1, args.batch_repeat)):  # alternating: every system once per round
                for executor, name in runs:
                    views = compute_batch_views(log, spec, version, executor, schemas)
                    tables = views.tables
                    times[name].append(views.elapsed_s)
                    result[name] = {"views": int(pc.sum(tables["counts"].column("views")).as_py()),
                                    "viewer_pairs": tables["viewers"].num_rows,
                                    "attributed_revenue": float(pc.sum(tables["attribution"].column(
                                        "attributed_revenue")).as_py() or 0.0)}
                    print(f"round {round_number + 1}: batch recomputation of {version:,} events, engine "
                          f"({executor}): {views.elapsed_s:.2f} s", flush=True)
                for peer, measure in peers:
                    answer = measure(directory, version)
                    times[peer].append(answer.pop("elapsed_s"))
                    result[peer] = answer
                    print(f"round {round_number + 1}: same views with {peer}: {times[peer][-1]:.2f} s", flush=True)
            for name, runs_s in times.items():
                result[name]["elapsed_s"] = statistics.median(runs_s)
                result[name]["runs_s"] = runs_s
        for peer, _ in (("polars", None), ("duckdb", None)):
            result[f"ray_over_{peer}"] = result["engine_ray"]["elapsed_s"] / result[peer]["elapsed_s"]
            result[f"same_answers_as_{peer}"] = _same_answers(result["engine_ray"], result[peer])
            print(f"median engine (ray) / {peer} time: {result[f'ray_over_{peer}']:.2f}, same answers: "
                  f"{result[f'same_answers_as_{peer}']}", flush=True)
        result["load_average"] = os.getloadavg()
        result["stored_events"] = version
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def _chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    ingest = results.get("ingest", {})
    if ingest:
        labels = ["alone", "during batch"]
        axes[0].bar(labels, [ingest["alone"]["visible_events_per_s"] / 1e3,
                             ingest["during_batch"]["visible_events_per_s"] / 1e3], color=["#4c72b0", "#dd8452"])
        axes[0].axhline(500, color="red", linestyle="--", label="target 500k/s")
        axes[0].set_ylabel("k events/s (acked and visible)")
        axes[0].set_title("ingest + speed layer")
        axes[0].legend()
        latencies = [ingest["during_batch"]["freshness"]["p50_ms"], ingest["during_batch"]["freshness"]["p99_ms"],
                     ingest["during_batch"]["ads_shown_query"]["p50_ms"] or 0,
                     ingest["during_batch"]["ads_shown_query"]["p99_ms"] or 0]
        axes[1].bar(["fresh p50", "fresh p99", "query p50", "query p99"], latencies, color="#55a868")
        axes[1].set_yscale("log")
        axes[1].set_ylabel("ms (under load)")
        axes[1].set_title("freshness and ads_shown latency")
    batch = results.get("batch", {})
    if batch:
        names = [name for name in ("engine_ray", "engine_inline", "polars", "duckdb") if name in batch]
        axes[2].bar(names, [batch[name]["elapsed_s"] for name in names], color="#8172b2")
        axes[2].axhline(30, color="red", linestyle="--", label="target 30 s")
        axes[2].set_ylabel("seconds")
        axes[2].set_title(f"batch recomputation, {batch['events'] / 1e6:.0f} M events")
        axes[2].legend()
    figure.tight_layout()
    figure.savefig(path)


def main(argv: list[str]) -> int:
    """Run the Lambda benchmark; prints figures and writes JSON + PNG."""
    args = _parse(argv)
    import sys

    import engine

    sys.setswitchinterval(args.switch_interval)  # query threads wait less for the GIL

    engine.connect(num_cpus=2)
    results: dict[str, Any] = {"machine_cpus": engine.cluster.available_cpus()}
    try:
        if args.events > 0:
            results["ingest"] = phase_ingest(args)
        if args.batch_events > 0:
            results["batch"] = phase_batch(args)
    finally:
        engine.shutdown()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lambda.json").write_text(json.dumps(results, indent=2))
    _chart(results, args.out / "lambda.png")
    print(f"wrote {args.out / 'lambda.json'} and {args.out / 'lambda.png'}")
    return 0
