"""Scatter-gather latency: shard hosts vs one actor per shard vs Ray's fan-out floor.

``python -m bench scatter-gather`` loads ~1 M (word, count) rows as 8 shards and sends
1,000 sequential top-k prefix queries (``jobs.topk_search``):

1. healthy shards, requests interleaved so machine noise hits all alike, the order of
   the three rotating request by request (each runs after each other one equally often:
   an 8-actor fan-out leaves work behind it on 2 cores that slows whatever runs next):
   - the engine's ``gather`` over its shard hosts (one per node by default, one actor
     call per host per request);
   - the naive per-shard design: ``ray.get([a.query.remote(q) for a in actors])`` over one
     plain actor per shard, + the same merge;
   - the *floor* of any per-shard design: the same fan-out to 8 actors that do nothing.
   Ratios engine / floor are in the output (issue 12's targets: p50 <= 0.5 x the floor's
   p50, p99 <= the floor's p50);
2. the same queries as long-running requests: ``submit`` then ``wait`` by id;
3. one shard stalled (its handler sleeps well past the deadline), other shards on its host
   healthy: the engine's p99 against the deadline (target: deadline + 5 ms), the fraction
   of answers missing only the stalled shard; the naive peer, which has no deadline, for a
   few requests only (each one waits for the stall).

Writes ``bench/results/scatter_gather.json`` and a latency chart
``bench/results/scatter_gather.png``.  ``--short`` runs a few seconds on small data and
writes to a private temporary directory (a smoke test, not figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

import engine
from engine.scatter_gather import NotEnoughRepliesError, ScatterGatherOptions
from engine.scatter_gather.ray_executor import RayScatterGather
from jobs.topk_search import WARMUP_REQUEST, build_search, prefix_top_k, split_shards

RESULTS = Path(__file__).resolve().parent / "results"
LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


STALL_MARK = {b"sorted_by": b"word", b"bench_stall": b"1"}


@dataclass(frozen=True)
class StalledHandler:
    """``prefix_top_k``, after sleeping ``stall_s`` on a shard marked by :func:`mark_stalled`
    (or on every shard when ``everywhere``): a shard that misses every deadline."""

    stall_s: float
    everywhere: bool = False

    def __call__(self, shard: pa.Table, request: dict) -> pa.Table:
        if self.everywhere or (shard.schema.metadata or {}).get(b"bench_stall") == b"1":
            time.sleep(self.stall_s)
        return prefix_top_k(shard, request)


def mark_stalled(shard: pa.Table) -> pa.Table:
    """The same shard, marked for :class:`StalledHandler` to stall on."""
    return shard.replace_schema_metadata(STALL_MARK)


def make_word_counts(rows: int, seed: int) -> pa.Table:
    """About ``rows`` distinct random lowercase words (4-10 letters) with Zipf counts."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 11, size=int(rows * 1.05))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = LETTERS[rng.integers(0, 26, size=int(offsets[-1]))]
    words = pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets),
                                        pa.py_buffer(data.tobytes()))
    words = pc.unique(words)[:rows]
    counts = np.minimum(rng.zipf(1.3, size=len(words)), 10_000_000).astype(np.int64)
    # Shuffle so every shard holds every prefix (hash-partitioned word-count output).
    order = rng.permutation(len(words))
    return pa.table({"word": words.take(pa.array(order)), "count": pa.array(counts)})


def make_requests(count: int, k: int, seed: int) -> list[dict]:
    """``count`` queries for random two-letter prefixes."""
    rng = np.random.default_rng(seed)
    pairs = LETTERS[rng.integers(0, 26, size=(count, 2))]
    return [{"prefix": bytes(pair).decode(), "k": k} for pair in pairs]


def percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max of latencies, in milliseconds."""
    values = np.asarray(seconds) * 1000.0
    return {"n": int(len(values)), "p50_ms": float(np.percentile(values, 50)),
            "p95_ms": float(np.percentile(values, 95)),
            "p99_ms": float(np.percentile(values, 99)),
            "mean_ms": float(values.mean()), "max_ms": float(values.max())}


class NaiveShard:
    """The peer's worker: a plain actor holding a shard, returning Arrow tables as is."""

    def __init__(self, shard: pa.Table, handler: Callable[[pa.Table, dict], pa.Table]) -> None:
        self.shard = shard
        self.handler = handler

    def query(self, request: dict) -> pa.Table:
        """The handler's reply over this shard."""
        return self.handler(self.shard, request)


RemoteNaiveShard = ray.remote(num_cpus=0)(NaiveShard)


def start_naive_shards(shards: Sequence[pa.Table], stalled: float | None = None,
                       handler: Callable[[pa.Table, dict], Any] = prefix_top_k) -> list:
    """One plain actor per shard (the last one sleeping ``stalled`` s per request if set)."""
    handlers = [handler] * len(shards)
    if stalled is not None:
        handlers[-1] = StalledHandler(stalled, everywhere=True)
    actors = [RemoteNaiveShard.remote(ray.put(shard), handler)
              for shard, handler in zip(shards, handlers)]
    healthy = actors if stalled is None else actors[:-1]
    ray.get([actor.query.remote(WARMUP_REQUEST) for actor in healthy])
    return actors


def naive_fan_out(actors: Sequence[Any], aggregate: Callable[[list], Any],
                  request: dict) -> Any:
    """The peer: ``ray.get`` of every actor's reply (no deadline), merged the same way."""
    return aggregate(ray.get([actor.query.remote(request) for actor in actors]))


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of one call, and its result."""
    start = time.perf_counter()
    value = call()
    return time.perf_counter() - start, value


def no_reply(shard: pa.Table, request: dict) -> None:
    """A handler that does nothing: measures Ray's own fan-out cost (the floor)."""
    return None


def run_healthy(service: RayScatterGather, naive_actors: list, floor_actors: list,
                requests: list[dict], warmup: int) -> tuple[dict, dict, dict, int]:
    """Engine, naive peer and no-op floor on healthy shards, interleaved request by
    request; returns the three figures and how many answers differ engine vs naive."""
    engine_s, naive_s, floor_s, mismatches, partial = [], [], [], 0, 0
    for index, request in enumerate(requests[:warmup] + requests):
        runs = {
            "engine": lambda: service.gather(request),
            "naive": lambda: naive_fan_out(naive_actors, service.aggregator, request),
            "floor": lambda: ray.get([a.query.remote(request) for a in floor_actors])}
        order = list(runs)[index % 3:] + list(runs)[:index % 3]
        measured = {name: timed(runs[name]) for name in order}
        (engine_time, result), (naive_time, naive_value) = measured["engine"], measured["naive"]
        floor_time = measured["floor"][0]
        if index < warmup:
            continue
        engine_s.append(engine_time)
        naive_s.append(naive_time)
        floor_s.append(floor_time)
        partial += result.partial
        mismatches += result.value.to_pylist() != naive_value.to_pylist()
    engine = percentiles_ms(engine_s) | {"partial_answers": partial}
    return engine, percentiles_ms(naive_s), percentiles_ms(floor_s), mismatches


def run_stalled(service: RayScatterGather, naive_actors: list, requests: list[dict],
                deadline_s: float, naive_requests: int) -> tuple[dict, dict]:
    """The last shard stalled (the other shards of its host healthy): engine latency vs
    deadline; the naive peer (no deadline) for a few requests.

    ``fraction_missing_only_stalled_shard`` counts answers whose only missing shard is the
    stalled one, i.e. its host-mates still answered (others missing too means the machine
    was slower than the deadline).
    """
    names = service.worker_names
    latencies, partial, named, no_replies = [], 0, 0, 0
    for request in requests:
        start = time.perf_counter()
        try:
            result = service.gather(request, deadline_s=deadline_s)
        except NotEnoughRepliesError:  # nobody beat the deadline: an empty answer
            latencies.append(time.perf_counter() - start)
            partial, no_replies = partial + 1, no_replies + 1
            continue
        latencies.append(time.perf_counter() - start)
        partial += result.partial
        named += result.missing == [names[-1]]
    stats = percentiles_ms(latencies)
    engine = stats | {
        "deadline_ms": deadline_s * 1000.0,
        "fraction_partial": partial / len(requests),
        "fraction_missing_only_stalled_shard": named / len(requests),
        "requests_with_no_reply_in_time": no_replies,
        "p99_minus_deadline_ms": stats["p99_ms"] - deadline_s * 1e3}
    naive = [timed(lambda: naive_fan_out(naive_actors, service.aggregator, r))[0]
             for r in requests[:naive_requests]]
    return engine, percentiles_ms(naive)


def run_long_running(service: RayScatterGather, requests: list[dict]) -> dict:
    """``submit`` (returns an id at once) then ``wait`` for each request, sequentially."""
    submit_s, complete_s, complete = [], [], 0
    for request in requests:
        start = time.perf_counter()
        request_id = service.submit(request)
        submit_s.append(time.perf_counter() - start)
        result = service.wait(request_id, timeout_s=10.0)
        complete_s.append(time.perf_counter() - start)
        complete += result.done and not result.partial
    return {"submit": percentiles_ms(submit_s), "submit_to_complete": percentiles_ms(complete_s),
            "fraction_complete": complete / len(requests)}


def draw_chart(path: Path, figures: dict) -> None:
    """Bar chart of p50/p95/p99 for each configuration."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [("engine (shard hosts), healthy", figures["healthy"]["engine"]),
              ("naive actor per shard, healthy", figures["healthy"]["naive"]),
              ("no-op fan-out to 8 actors (floor)", figures["healthy"]["ray_no_op_fan_out_floor"]),
              ("engine, 1 shard stalled", figures["stalled"]["engine"]),
              ("naive ray.get, 1 stalled", figures["stalled"]["naive"])]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.16
    for offset, (label, stats) in enumerate(series):
        values = [stats["p50_ms"], stats["p95_ms"], stats["p99_ms"]]
        ax.bar(np.arange(3) + (offset - 2) * width, values, width, label=label)
    ax.set_xticks(np.arange(3), ["p50", "p95", "p99"])
    ax.set_yscale("log")
    ax.set_ylabel("latency per request (ms, log scale)")
    ax.axhline(figures["stalled"]["engine"]["deadline_ms"], color="grey", linestyle="--",
               label="deadline")
    ax.set_title(f"Scatter-gather top-k, {figures['config']['shards']} shards on "
                 f"{figures['config']['hosts']} hosts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench scatter-gather",
        description="Latency of scatter-gather top-k prefix queries over shard hosts, "
                    "against one plain actor per shard and the do-nothing fan-out floor, "
                    "healthy and with one shard stalled. Writes JSON (and a PNG chart) to "
                    "bench/results/.")
    parser.add_argument("--shards", type=int, default=8, help="shards (default 8)")
    parser.add_argument("--hosts", type=int, default=None,
                        help="shard hosts (default: one per node)")
    parser.add_argument("--short", action="store_true",
                        help="a few seconds on small data, output in a private temporary "
                             "directory: checks the benchmark runs, gives no figures")
    parser.add_argument("--rows", type=int, default=1_000_000,
                        help="distinct words over all shards (default 1,000,000)")
    parser.add_argument("--requests", type=int, default=1000,
                        help="sequential requests per measurement (default 1000)")
    parser.add_argument("--warmup", type=int, default=50,
                        help="untimed requests before measuring (default 50)")
    parser.add_argument("--k", type=int, default=10, help="top-k size (default 10)")
    parser.add_argument("--deadline-ms", type=float, default=50.0,
                        help="deadline of the stalled run (default 50 ms)")
    parser.add_argument("--stall-ms", type=float, default=500.0,
                        help="how long the stalled shard sleeps per request (default 500)")
    parser.add_argument("--naive-stalled-requests", type=int, default=10,
                        help="requests for the naive peer with a stalled shard, each waits "
                             "the full stall (default 10)")
    parser.add_argument("--long-running-requests", type=int, default=200,
                        help="requests sent with submit + wait (default 200)")
    parser.add_argument("--seed", type=int, default=7, help="data/request seed (default 7)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for scatter_gather.json / .png, or a .json file path "
                             "(default bench/results)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    args = parser.parse_args(list(argv))
    if args.short:
        args.rows, args.requests, args.warmup = min(args.rows, 20_000), min(args.requests, 20), 5
        args.long_running_requests = min(args.long_running_requests, 10)
        args.naive_stalled_requests = min(args.naive_stalled_requests, 2)
        args.stall_ms = min(args.stall_ms, 200.0)
    if args.out is None:
        args.out = (Path(tempfile.mkdtemp(prefix="bench-sg-")) if args.short else RESULTS) / "scatter_gather.json"
    elif args.out.suffix != ".json":  # a directory, as for the other benchmarks
        args.out = args.out / "scatter_gather.json"
    for name in ("shards", "rows", "requests", "k"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv: list[str]) -> int:
    """Run the benchmark, print the figures and write them as JSON."""
    args = parse_args(argv)
    from engine.cluster import connect, shutdown

    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    table = make_word_counts(args.rows, args.seed)
    requests = make_requests(args.requests + args.warmup, args.k, args.seed + 1)
    shards = split_shards(table, args.shards)
    cluster = connect()
    healthy_options = ScatterGatherOptions(deadline_s=10.0, hosts=args.hosts,
                                           warmup_request=WARMUP_REQUEST)
    stalled_shards = shards[:-1] + [mark_stalled(shards[-1])]
    stall = StalledHandler(args.stall_ms / 1000.0)
    try:
        with engine.run(build_search(shards, args.k, healthy_options)) as service:
            hosts = len(service.assignment)
            naive_actors = start_naive_shards(shards)
            floor_actors = start_naive_shards(shards, handler=no_reply)
            engine_figures, naive, floor, mismatches = run_healthy(
                service, naive_actors, floor_actors, requests[args.warmup:], args.warmup)
            for actor in floor_actors:
                ray.kill(actor)
            long_running = run_long_running(service, requests[:args.long_running_requests])
        ray.kill(naive_actors[-1])
        naive_actors[-1] = start_naive_shards(shards[-1:], args.stall_ms / 1000.0)[0]
        stalled_spec = replace(build_search(stalled_shards, args.k, healthy_options), handler=stall)
        with engine.run(stalled_spec) as stalled_service:
            stalled_engine, stalled_naive = run_stalled(
                stalled_service, naive_actors, requests[args.warmup:], args.deadline_ms / 1000.0,
                args.naive_stalled_requests)
        for actor in naive_actors:
            ray.kill(actor)
    finally:
        shutdown()
    figures = {
        "suite": "scatter-gather",
        "config": {"shards": args.shards, "hosts": hosts, "rows": table.num_rows,
                   "requests": args.requests, "short": args.short,
                   "k": args.k, "deadline_ms": args.deadline_ms, "stall_ms": args.stall_ms,
                   "cluster_cpus": cluster.cpus, "machine": platform.machine(),
                   "python": platform.python_version(), "ray": ray.__version__,
                   "pyarrow": pa.__version__,
                   # Other processes on the machine skew latency: report the load.
                   "load_avg_1min_at_start": load_at_start,
                   "load_avg_1min_at_end": os.getloadavg()[0]},
        "healthy": {"engine": engine_figures, "naive": naive, "ray_no_op_fan_out_floor": floor,
                    "answers_differing_from_naive": mismatches,
                    "ratio_engine_over_floor_p50": engine_figures["p50_ms"] / floor["p50_ms"],
                    "ratio_engine_p99_over_floor_p50": engine_figures["p99_ms"] / floor["p50_ms"],
                    "ratio_naive_over_engine_p50": naive["p50_ms"] / engine_figures["p50_ms"],
                    "ratio_naive_over_engine_p99": naive["p99_ms"] / engine_figures["p99_ms"]},
        "long_running": long_running,
        "stalled": {"engine": stalled_engine, "naive": stalled_naive,
                    "ratio_naive_over_engine_p50":
                        stalled_naive["p50_ms"] / stalled_engine["p50_ms"]},
        "targets": {
            "healthy_p50_at_most_half_the_floor_p50":
                engine_figures["p50_ms"] <= 0.5 * floor["p50_ms"],
            "healthy_p99_at_most_the_floor_p50": engine_figures["p99_ms"] <= floor["p50_ms"],
            "stalled_p99_within_deadline_plus_5ms":
                stalled_engine["p99_ms"] <= args.deadline_ms + 5.0,
            "stalled_every_answer_partial": stalled_engine["fraction_partial"] == 1.0},
        "wall_s": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    if not args.no_chart:
        draw_chart(args.out.with_suffix(".png"), figures)
    print(json.dumps(figures, indent=2))
    print(f"wrote {args.out}")
    return 0
