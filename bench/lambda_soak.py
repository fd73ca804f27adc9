"""``python -m bench lambda_soak``: Lambda ingest soak -- memory stays bounded, nothing is lost.

The ad-tech stream (``datasets.adevents``, one simulated minute per wall minute, so event
time follows the clock) is ingested at a paced ``--rate`` for ``--minutes`` into the
ad-tech deployment (speed layer, view shards and serving on the embedded Ray cluster, or
inline), with one real-time query a second (``ads_shown`` and ``active_viewers`` in turn).
Every ``--sample-every`` seconds the summed RSS and PSS of the whole process tree (this
process and every Ray process of the embedded cluster, read from ``/proc``) and the
deployment's ``state_size()`` are sampled.

At the end: every acknowledged event is in the reopened master log and covered by the
final answers; the final answers equal an independent plain-Python oracle
(``jobs.adtech.oracle.AdEventTally``) fed the same batches, run after sampling stopped.
Writes ``bench/results/lambda_soak.json`` and ``lambda_soak.png`` (RSS over time) and
prints a summary; exit status 1 when a check fails.  The oracle is plain Python: about
25 us per event (measured with other work on the machine), so some 5 minutes after the
default 10 minutes at 20,000 events/s.

What bounds memory: the real-time views are compacted per view key (``LambdaOptions.
speed_chunks``), and the dedup index holds the ids of the last 9/8 ``--dedup-horizon-
minutes`` of event time -- so the horizon, not the soak's length, sets the dedup's size.
The views themselves grow by one minute of keys per minute (they are per-minute views).
``--batch-every`` adds the batch layer, whose MapReduce job reads the whole log so far.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.proc_memory import tree_memory

RESULTS = Path(__file__).resolve().parent / "results"
_MINUTES = (5, 60, 24 * 60)


def _number(low: float, kind: type = float, strict: bool = False) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        return value

    return parse


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, the module docstring kept as written."""


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench lambda_soak", description=__doc__,
                                     formatter_class=_Formatter)
    parser.add_argument("--minutes", type=_number(0, strict=True), default=10.0, help="how long to ingest")
    parser.add_argument("--rate", type=_number(0, strict=True), default=20_000, help="events per second (paced)")
    parser.add_argument("--batch-rows", type=_number(1, int), default=2_000, help="events per ingest call")
    parser.add_argument("--shards", type=_number(1, int), default=2, help="view shards")
    parser.add_argument("--sample-every", type=_number(0, strict=True), default=2.0, help="seconds between samples")
    parser.add_argument("--dedup-horizon-minutes", type=_number(0), default=2.0,
                        help="dedup horizon in minutes of event time (bounds the dedup index)")
    parser.add_argument("--batch-every", type=_number(0), default=0.0,
                        help="seconds between batch recomputations (0: no batch layer, the speed layer alone)")
    parser.add_argument("--executor", choices=["ray", "inline"], default="ray", help="where the layers run")
    parser.add_argument("--seed", type=_number(0, int), default=11, help="stream seed")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for lambda_soak.json / .png")
    return parser.parse_args(argv)


# -- memory of the process tree ---------------------------------------------------------------

def stream_chunk(number: int, rate: float, seed: int, start_ms: int) -> Any:
    """Minute ``number`` of the soak stream: ``rate * 60`` events whose event times lie in that minute."""
    from datasets.adevents import AdEventSpec, generate_events

    start = datetime.fromtimestamp((start_ms + number * 60_000) / 1000, tz=timezone.utc)
    spec = AdEventSpec(events=int(rate * 60), seed=(seed * 4_099 + number) % 65_536,
                       start=start.strftime("%Y-%m-%dT%H:%M:%SZ"), span_hours=1 / 60)
    return generate_events(spec)


def _producer(chunks: "queue.Queue[Any]", stop: threading.Event, rate: float, seed: int, start_ms: int) -> None:
    number = 0
    while not stop.is_set():
        try:
            item: Any = stream_chunk(number, rate, seed, start_ms)
        except Exception as error:  # handed to the ingest loop, which raises it
            item = error
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.2)
                break
            except queue.Full:
                continue
        number += 1


# -- the soak -----------------------------------------------------------------------------------

def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None}
    return {"p50_ms": float(np.percentile(values, 50) * 1000), "p99_ms": float(np.percentile(values, 99) * 1000)}


def _final_answers(lam: Any) -> dict[str, Any]:
    as_of = lam.latest_event_time_ms
    answers: dict[str, Any] = {"as_of_ms": as_of}
    for minutes in _MINUTES:
        shown = lam.ads_shown(as_of=as_of, hours=minutes / 60, top_k=3)
        answers[f"ads_shown_{minutes}"] = {"value": shown.value, "speed_offset": shown.speed_offset,
                                           "top": [(r["advertiser_id"], r["views"]) for r in shown.extra["top"].to_pylist()]}
        viewers = lam.active_viewers(as_of=as_of, minutes=minutes)
        answers[f"active_viewers_{minutes}"] = {"value": viewers.value, "speed_offset": viewers.speed_offset}
    return answers


def _oracle_answers(args: argparse.Namespace, start_ms: int, ingested: list[int], as_of: int) -> dict[str, Any]:
    """The same batches through the plain-Python tally; its answers and counts."""
    from jobs.adtech.oracle import AdEventTally
    from jobs.adtech.queries import window_minutes

    tally = AdEventTally(int(args.dedup_horizon_minutes * 60_000))
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    for number, rows in enumerate(ingested):
        chunk = stream_chunk(number, args.rate, args.seed, start_ms)
        for begin in range(0, rows, args.batch_rows):
            for name, count in tally.ingest(chunk.slice(begin, min(args.batch_rows, rows - begin))).items():
                totals[name] += count
    answers: dict[str, Any] = {"totals": totals}
    for minutes in _MINUTES:
        first, last = window_minutes(as_of, minutes)
        top = sorted(tally.views_by_advertiser(tally.stored, first, last).items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        answers[f"ads_shown_{minutes}"] = {"value": tally.ads_shown(tally.stored, first, last), "top": top}
        answers[f"active_viewers_{minutes}"] = {"value": tally.active_viewers(tally.stored, first, last)}
    return answers


def soak(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """Run the soak in ``directory``; returns the results (samples, figures, checks)."""
    from engine.lambda_arch import LambdaOptions
    from engine.lambda_arch.log import MasterLog
    from jobs.adtech import CONTRACT, AdTech

    root = os.getpid()
    options = LambdaOptions(shards=args.shards, dedup_horizon_hours=args.dedup_horizon_minutes / 60)
    start_ms = int(time.time() // 60 * 60_000)
    chunks: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()
    producer = threading.Thread(target=_producer, args=(chunks, stop, args.rate, args.seed, start_ms), daemon=True)
    producer.start()
    lam = AdTech.start(directory, args.executor, options)
    samples: list[dict[str, Any]] = []
    latencies: list[float] = []
    failures: list[str] = []
    acked = {"accepted": 0, "duplicates": 0, "rejected": 0, "rows": 0}
    started = 0.0  # set after the warm-up

    def sample() -> None:
        state = lam.state_size()
        samples.append({"t_s": time.perf_counter() - started, **tree_memory(root), "acknowledged": acked["accepted"],
                        **state})

    def sampler() -> None:
        while not stop.wait(args.sample_every):
            sample()

    def querier() -> None:
        for second in range(1, 1 << 30):
            if stop.wait(max(0.0, started + second - time.perf_counter())):
                return
            began = time.perf_counter()
            try:
                if second % 2:
                    lam.ads_shown(hours=1, top_k=3)
                else:
                    lam.active_viewers(minutes=5)
                latencies.append(time.perf_counter() - began)
            except Exception as error:  # counted and reported, the soak goes on
                failures.append(f"{type(error).__name__}: {error}")

    # Warm-up (not timed): the first batch of the stream starts the speed stage's replica and
    # the shards' imports, so the first sample sees the deployment up, not starting.
    first = chunks.get()
    if isinstance(first, Exception):
        raise first
    warm = first.slice(0, args.batch_rows)
    ack = lam.ingest(warm)
    acked.update(accepted=ack.accepted, duplicates=ack.duplicates, rejected=ack.rejected, rows=warm.num_rows)
    lam.wait_visible(timeout_s=600)
    lam.ads_shown(hours=1, top_k=3)
    lam.active_viewers(minutes=5)
    started = time.perf_counter() - warm.num_rows / args.rate
    sample()
    threads = [threading.Thread(target=sampler, daemon=True), threading.Thread(target=querier, daemon=True)]
    for thread in threads:
        thread.start()
    if args.batch_every > 0:
        lam.start_batch_schedule(args.batch_every)
    ingested: list[int] = [warm.num_rows]
    duration = args.minutes * 60
    chunk, resume = first, warm.num_rows
    try:
        while time.perf_counter() - started < duration:
            if chunk is None:
                chunk, resume = chunks.get(), 0
                if isinstance(chunk, Exception):
                    raise chunk
                ingested.append(0)
            for begin in range(resume, chunk.num_rows, args.batch_rows):
                pause = started + acked["rows"] / args.rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                if time.perf_counter() - started >= duration:
                    break
                batch = chunk.slice(begin, args.batch_rows)
                ack = lam.ingest(batch)
                acked["accepted"] += ack.accepted
                acked["duplicates"] += ack.duplicates
                acked["rejected"] += ack.rejected
                acked["rows"] += batch.num_rows
                ingested[-1] += batch.num_rows
            chunk = None
        ingest_s = time.perf_counter() - started
        lam.stop_batch_schedule()
        lam.wait_visible(timeout_s=600)
        sample()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    final = _final_answers(lam)
    end_offset = lam.end_offset
    counters = lam.counters()
    lam.close()
    with MasterLog(directory, CONTRACT, options.dedup_horizon_ms) as log:  # reopened: what is durable
        durable = log.end_offset
    return {"samples": samples, "ingested_per_chunk": ingested, "start_ms": start_ms, "ingest_s": ingest_s,
            "acked": acked, "end_offset": end_offset, "durable_end_offset": durable, "final": final,
            "latencies": latencies, "query_failures": failures, "batch_recomputations":
            counters.get("batch_recomputations", 0)}


def summarize(args: argparse.Namespace, run: dict[str, Any], oracle: dict[str, Any]) -> dict[str, Any]:
    """Figures and checks of a soak run against its oracle."""
    samples = run["samples"]
    times = np.array([s["t_s"] for s in samples])
    rss = np.array([s["rss"] for s in samples]) / 2**20
    pss = np.array([s["pss"] for s in samples]) / 2**20
    half = times >= times[-1] / 2
    slope = (lambda values: float(np.polyfit(times[half] / 60, values[half], 1)[0]) if half.sum() >= 2 else None)
    acked = run["acked"]
    checks = {
        "no_acknowledged_event_lost": acked["accepted"] == run["end_offset"] == run["durable_end_offset"]
        and all(run["final"][f"ads_shown_{m}"]["speed_offset"] == run["end_offset"] for m in _MINUTES),
        "same_acks_as_oracle": {k: acked[k] for k in ("accepted", "duplicates", "rejected")} == oracle["totals"],
        "answers_equal_oracle": all(
            run["final"][name]["value"] == oracle[name]["value"] for name in oracle if name in run["final"])
        and all([tuple(t) for t in run["final"][f"ads_shown_{m}"]["top"]] == [tuple(t) for t in
                                                                             oracle[f"ads_shown_{m}"]["top"]]
                for m in _MINUTES),
    }
    return {"rss_mb": {"start": float(rss[0]), "peak": float(rss.max()), "end": float(rss[-1])},
            "pss_mb": {"start": float(pss[0]), "peak": float(pss.max()), "end": float(pss[-1])},
            "rss_slope_second_half_mb_per_min": slope(rss), "pss_slope_second_half_mb_per_min": slope(pss),
            "events_offered": acked["rows"], "events_acknowledged": acked["accepted"],
            "duplicates": acked["duplicates"], "rejected": acked["rejected"],
            "achieved_rate_events_per_s": acked["rows"] / run["ingest_s"],
            "queries_answered": len(run["latencies"]), "queries_failed": len(run["query_failures"]),
            "query_latency": _percentiles(run["latencies"]),
            "state_at_end": {k: samples[-1][k] for k in ("chunks", "speed_rows", "speed_bytes", "batch_rows",
                                                         "dedup_entries")},
            "checks": checks, "ok": all(checks.values())}


def chart(results: dict[str, Any], path: Path) -> None:
    """RSS/PSS of the process tree over time, and the state the deployment holds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = results["samples"]
    minutes = [s["t_s"] / 60 for s in samples]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    top.plot(minutes, [s["rss"] / 2**20 for s in samples], label="RSS, summed over the process tree")
    top.plot(minutes, [s["pss"] / 2**20 for s in samples], label="PSS, summed (shared pages split)")
    top.plot(minutes, [s["driver_rss"] / 2**20 for s in samples], label="driver RSS", linestyle=":")
    top.set_ylabel("MiB")
    top.set_ylim(bottom=0)
    summary = results["summary"]
    top.set_title(f"Lambda soak: {results['config']['rate']:,.0f} events/s, {summary['events_acknowledged']:,} "
                  f"acknowledged, checks {'passed' if summary['ok'] else 'FAILED'}")
    top.legend(loc="lower right")
    bottom.plot(minutes, [max(1, s["speed_rows"]) for s in samples], label="speed-layer rows held")
    bottom.plot(minutes, [max(1, s["dedup_entries"]) for s in samples], label="dedup entries held")
    bottom.plot(minutes, [max(1, s["acknowledged"]) for s in samples], label="events acknowledged", linestyle=":")
    bottom.set_yscale("log")
    bottom.set_ylabel("rows (log scale)")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path)


def main(argv: list[str]) -> int:
    """Run the soak, check it, write JSON + PNG, print the summary; 1 when a check fails."""
    args = _parse(argv)
    import engine

    if args.executor == "ray":  # the MapReduce pool is pre-started only when the batch layer runs
        engine.connect(num_cpus=2, warm=args.batch_every > 0)
    directory = Path(tempfile.mkdtemp(prefix="bench-lambda-soak-"))
    try:
        try:
            run = soak(args, directory)
        finally:
            if args.executor == "ray":
                engine.shutdown()
        print(f"soak done: {run['acked']['accepted']:,} events acknowledged; checking against the oracle ...",
              flush=True)
        checking = time.perf_counter()
        oracle = _oracle_answers(args, run["start_ms"], run["ingested_per_chunk"], run["final"]["as_of_ms"])
        oracle["elapsed_s"] = time.perf_counter() - checking
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    summary = summarize(args, run, oracle)
    results = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "machine_cpus": os.cpu_count(), "summary": summary, "final_answers": run["final"],
               "oracle_answers": oracle, "query_failures": run["query_failures"][:20],
               "batch_recomputations": run["batch_recomputations"], "samples": run["samples"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lambda_soak.json").write_text(json.dumps(results, indent=2, default=str))
    chart(results, args.out / "lambda_soak.png")
    rss, latency = summary["rss_mb"], summary["query_latency"]
    print(f"RSS (process tree) start {rss['start']:.0f} MiB, peak {rss['peak']:.0f}, end {rss['end']:.0f}; "
          f"slope over the second half {summary['rss_slope_second_half_mb_per_min']} MiB/min "
          f"(PSS {summary['pss_slope_second_half_mb_per_min']})")
    print(f"events acknowledged {summary['events_acknowledged']:,} of {summary['events_offered']:,} offered "
          f"({summary['achieved_rate_events_per_s']:,.0f}/s); queries answered {summary['queries_answered']}, "
          f"failed {summary['queries_failed']}; latency p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms")
    print(f"state at the end {summary['state_at_end']}; checks {summary['checks']}")
    print(f"wrote {args.out / 'lambda_soak.json'} and {args.out / 'lambda_soak.png'}")
    return 0 if summary["ok"] else 1
