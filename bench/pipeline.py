"""``python -m bench pipeline``: a 3-stage Arrow pipeline (parse -> filter -> project)
against a Ray Data ``map_batches`` chain doing the same work on the same data, in the
same run, plus the per-batch overhead of the pipes measured with no-op stages.

The data is ``--rows`` CSV lines ``id,user,amount,category`` generated vectorized
before any timing.  The engine runs twice per repeat: with its stages chained into one
link (``--replicas``, default 2,2,2: equal replicas, so the three run in one call per
batch, as Ray Data fuses its three ``map_batches`` into one task) and unchained
(``--unchained-replicas``, default 2,1,1, ``chaining=False``: one hop per stage).  Each
repeat runs the three in a rotated order; medians are reported, and every result is
checked to hold the same rows.  Before the timed repeats every system runs once on the
full data, untimed (reported apart as ``first_full_run_s``).  The no-op overhead is
measured both chained and unchained.
Writes ``pipeline.json`` and ``pipeline.png`` to ``--out`` (default ``bench/results``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

RESULTS = Path(__file__).resolve().parent / "results"
CATEGORIES = ["books", "games", "music", "garden", "tools", "food", "toys", "sport"]
KEEP = ["books", "games", "tools", "toys"]


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="CSV lines to generate (default 10M)")
    parser.add_argument("--batch-rows", type=int, default=131_072, help="rows per batch / block (default 128Ki)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats; the median is reported (default 3)")
    parser.add_argument("--replicas", type=str, default="2,2,2",
                        help="replicas of parse,filter,project for the chained run (default 2,2,2: one link)")
    parser.add_argument("--unchained-replicas", type=str, default="2,1,1",
                        help="replicas of parse,filter,project for the run with chaining off (default 2,1,1)")
    parser.add_argument("--noop-batches", type=int, default=2000, help="batches for the overhead run (default 2000)")
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the embedded Ray cluster (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for pipeline.json / pipeline.png")
    return parser.parse_args(argv)


def make_lines(rows: int, seed: int = 7) -> pa.Table:
    """``rows`` CSV lines ``id,user,amount,category``, built with numpy/pyarrow (no Python loop per row)."""
    rng = np.random.default_rng(seed)
    ids = pc.cast(pa.array(np.arange(rows, dtype=np.int64)), pa.string())
    users = pc.binary_join_element_wise("u", pc.cast(pa.array(rng.integers(0, 100_000, rows)), pa.string()), "")
    amounts = pc.cast(pa.array(np.round(rng.random(rows) * 1000, 2)), pa.string())
    categories = pa.array(CATEGORIES).take(pa.array(rng.integers(0, len(CATEGORIES), rows)))
    return pa.table({"line": pc.binary_join_element_wise(ids, users, amounts, categories, ",")})


def parse(batch: pa.Table) -> pa.Table:
    """Split each ``line`` into typed columns."""
    fields = pc.split_pattern(batch["line"], ",")
    return pa.table({
        "id": pc.cast(pc.list_element(fields, 0), pa.int64()),
        "user": pc.list_element(fields, 1),
        "amount": pc.cast(pc.list_element(fields, 2), pa.float64()),
        "category": pc.list_element(fields, 3),
    })


def keep_rows(batch: pa.Table) -> pa.Table:
    """Keep big purchases of some categories."""
    mask = pc.and_(pc.greater(batch["amount"], 250.0), pc.is_in(batch["category"], value_set=pa.array(KEEP)))
    return batch.filter(mask)


def project(batch: pa.Table) -> pa.Table:
    """Keep id, category and the amount with tax."""
    return pa.table({"id": batch["id"], "category": batch["category"],
                     "amount_taxed": pc.round(pc.multiply(batch["amount"], 1.2), 2)})


def noop(batch: pa.Table) -> pa.Table:
    """Pass the batch through (pipe overhead only)."""
    return batch


def run_engine(lines: pa.Table, batch_rows: int, replicas: list[int], chaining: bool = True) -> pa.Table:
    import engine
    from engine import CollectSink, Pipeline, PipelineOptions, Stage, TableSource

    stages = [Stage("parse", parse, replicas=replicas[0]), Stage("filter", keep_rows, replicas=replicas[1]),
              Stage("project", project, replicas=replicas[2])]
    pipeline = Pipeline(TableSource(lines, batch_rows), stages, CollectSink(), PipelineOptions(chaining=chaining))
    return engine.run(pipeline).result().table


def run_ray_data(lines: pa.Table, batch_rows: int) -> pa.Table:
    import ray
    import ray.data

    blocks = [lines.slice(start, batch_rows) for start in range(0, lines.num_rows, batch_rows)]
    dataset = (
        ray.data.from_arrow(blocks)
        .map_batches(parse, batch_format="pyarrow", batch_size=None, zero_copy_batch=True)
        .map_batches(keep_rows, batch_format="pyarrow", batch_size=None, zero_copy_batch=True)
        .map_batches(project, batch_format="pyarrow", batch_size=None, zero_copy_batch=True)
    )
    tables = ray.get(dataset.to_arrow_refs())
    return pa.concat_tables([t for t in tables if t.num_rows])


def canonical(table: pa.Table) -> pa.Table:
    """The rows sorted by id, in one chunk (for comparing results)."""
    return table.sort_by("id").combine_chunks()


def _timed(fn: Callable[[], pa.Table]) -> tuple[float, pa.Table]:
    started = time.perf_counter()
    table = fn()
    return time.perf_counter() - started, table


def measure_overhead(batches: int, stages: int, chaining: bool = True) -> dict[str, float]:
    """No-op stages (one replica each, so chained into one link unless ``chaining`` is off):
    amortized seconds per batch per stage, and one batch's latency per stage."""
    import engine
    from engine import CallbackSink, CollectSink, LiveFeed, Pipeline, PipelineOptions, Stage, TableSource

    options = PipelineOptions(chaining=chaining)
    table = pa.table({"x": pa.array(np.arange(batches * 100, dtype=np.int64))})
    chain = [Stage(f"noop{i}", noop) for i in range(stages)]
    engine.run(Pipeline(TableSource(table.slice(0, 1000), 100), chain, CollectSink(), options)).result()  # warm-up
    started = time.perf_counter()
    result = engine.run(Pipeline(TableSource(table, 100), chain, CollectSink(), options)).result()
    elapsed = time.perf_counter() - started
    assert result.table is not None and result.table.num_rows == table.num_rows

    arrived = threading.Event()
    feed = LiveFeed(capacity=1)
    handle = engine.run(Pipeline(feed, chain, CallbackSink(lambda table: arrived.set()), options))
    latencies = []
    for i in range(60):
        arrived.clear()
        started = time.perf_counter()
        handle.push(pa.table({"x": [i]}))
        arrived.wait()
        latencies.append(time.perf_counter() - started)
    handle.close()
    baseline = _raw_actor_call_ms()
    busy = sum(result.metrics[f"noop{i}"].busy_s for i in range(stages))
    return {
        "chaining": chaining,
        "batches": batches,
        "stages": stages,
        "wall_s": elapsed,
        "amortized_ms_per_batch_per_stage": elapsed / (batches * stages) * 1000,
        "amortized_ms_per_batch_through_pipeline": elapsed / batches * 1000,
        "filter_busy_ms_per_batch_per_stage": busy / (batches * stages) * 1000,
        "latency_ms_per_batch_per_stage_median": statistics.median(latencies[5:]) / stages * 1000,
        "baseline_raw_ray_actor_call_ms_median": baseline,
    }


def _raw_actor_call_ms(calls: int = 200) -> float:
    """Median round trip of a sequential no-op Ray actor call, measured now (context for the latency)."""
    import ray

    @ray.remote(num_cpus=0)
    class Echo:
        def echo(self, value: int) -> int:
            return value

    echo = Echo.remote()
    ray.get(echo.echo.remote(0))
    times = []
    for i in range(calls):
        started = time.perf_counter()
        ray.get(echo.echo.remote(i))
        times.append(time.perf_counter() - started)
    ray.kill(echo)
    return statistics.median(times) * 1000


SYSTEMS = ("engine", "engine_unchained", "ray_data")
LABELS = {"engine": "engine, chained", "engine_unchained": "engine, unchained", "ray_data": "Ray Data map_batches"}


def _chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [report[name]["rows_per_s_median"] / 1e6 for name in SYSTEMS]
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.bar([LABELS[name] for name in SYSTEMS], values, color=["tab:blue", "tab:cyan", "tab:gray"])
    axis.set_ylabel("million input rows / s")
    axis.set_title(f"parse -> filter -> project, {report['rows'] / 1e6:.0f}M rows (median of {report['repeats']})")
    for x, value in enumerate(values):
        axis.text(x, value, f"{value:.2f}", ha="center", va="bottom")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def settle(min_s: float = 8.0, limit_s: float = 40.0, quiet_cpu_s: float = 0.1, step_s: float = 1.0) -> float:
    """Wait at least ``min_s``, then until this process and its children (the embedded
    cluster) use under ``quiet_cpu_s`` of CPU in ``step_s`` (at most ``limit_s`` in all);
    returns the seconds waited.

    After ``connect()`` the engine's MapReduce worker pool starts its other workers 2 s
    later, and each loads its compiled kernels once idle for 2 s (0.4-1 CPU-s per worker),
    which would otherwise fall inside the first timed runs of every system here."""
    import psutil

    def used() -> float:
        total = 0.0
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    started = time.perf_counter()
    time.sleep(min_s)
    before = used()
    while time.perf_counter() - started < limit_s:
        time.sleep(step_s)
        now = used()
        if now - before < quiet_cpu_s:
            break
        before = now
    return time.perf_counter() - started


def _replica_counts(text: str, flag: str) -> list[int]:
    counts = [int(n) for n in text.split(",")]
    if len(counts) != 3 or min(counts) < 1:
        raise SystemExit(f"{flag} needs three counts >= 1, e.g. 2,1,1")
    return counts


def main(argv: list[str]) -> int:
    """Run the benchmark and write the JSON report (and a chart)."""
    args = _parse_args(argv)
    replicas = _replica_counts(args.replicas, "--replicas")
    unchained = _replica_counts(args.unchained_replicas, "--unchained-replicas")
    import os

    import ray

    from engine.cluster import connect

    print(f"generating {args.rows:,} lines ...", flush=True)
    lines = make_lines(args.rows)
    info = connect(num_cpus=args.cpus)
    runs: dict[str, Callable[[pa.Table], pa.Table]] = {
        "engine": lambda data: run_engine(data, args.batch_rows, replicas, chaining=True),
        "engine_unchained": lambda data: run_engine(data, args.batch_rows, unchained, chaining=False),
        "ray_data": lambda data: run_ray_data(data, args.batch_rows),
    }
    load_start = os.getloadavg()
    try:
        for name in SYSTEMS:  # warm each path once (worker start-up, imports) on a small slice
            runs[name](lines.slice(0, 4 * args.batch_rows))
        # One untimed full-size round, reported apart: the first writes to each page of the
        # object store's shared memory fault it in (about 0.5 GB/s here, measured: 1.5 GiB
        # in 2.9 s), a cost every system pays once per cluster, not per run.
        first_run: dict[str, float] = {}
        for name in SYSTEMS:
            first_run[name], _ = _timed(lambda: runs[name](lines))
            print(f"first full run (untimed round): {name:16s} {first_run[name]:7.2f} s", flush=True)
        settled_s = settle()
        print(f"the cluster was quiet after {settled_s:.1f} s", flush=True)
        times: dict[str, list[float]] = {name: [] for name in SYSTEMS}
        same = True
        for repeat in range(args.repeats):
            order = SYSTEMS[repeat % 3:] + SYSTEMS[:repeat % 3]
            tables: dict[str, pa.Table] = {}
            for name in order:
                seconds, tables[name] = _timed(lambda: runs[name](lines))
                times[name].append(seconds)
                print(f"repeat {repeat}: {name:16s} {seconds:7.2f} s  ({args.rows / seconds / 1e6:.2f} M rows/s)", flush=True)
            reference = canonical(tables["ray_data"])
            same = same and all(canonical(tables[name]).equals(reference) for name in ("engine", "engine_unchained"))
            output_rows = tables["engine"].num_rows
            del tables
        print("measuring per-batch overhead with no-op stages ...", flush=True)
        overhead = measure_overhead(args.noop_batches, 3, chaining=True)
        overhead_unchained = measure_overhead(args.noop_batches, 3, chaining=False)
    finally:
        ray.shutdown()

    medians = {name: statistics.median(times[name]) for name in SYSTEMS}
    report: dict[str, Any] = {
        "suite": "pipeline",
        "rows": args.rows,
        "batch_rows": args.batch_rows,
        "batches": -(-args.rows // args.batch_rows),
        "repeats": args.repeats,
        "cpus": info.cpus,
        "load_average_1m_start_end": [load_start[0], os.getloadavg()[0]],
        "settled_before_timing_s": settled_s,
        "engine_replicas": dict(zip(["parse", "filter", "project"], replicas)),
        "engine_unchained_replicas": dict(zip(["parse", "filter", "project"], unchained)),
        "output_rows": output_rows,
        "same_rows": same,
        **{name: {"seconds": times[name], "seconds_median": medians[name],
                  "rows_per_s_median": args.rows / medians[name]} for name in SYSTEMS},
        "first_full_run_s": first_run,
        "first_full_run_ratio_engine_over_ray_data": first_run["ray_data"] / first_run["engine"],
        "throughput_ratio_engine_over_ray_data": medians["ray_data"] / medians["engine"],
        "throughput_ratio_engine_unchained_over_ray_data": medians["ray_data"] / medians["engine_unchained"],
        "overhead_noop": overhead,
        "overhead_noop_unchained": overhead_unchained,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(report, indent=2))
    _chart(report, args.out / "pipeline.png")
    print(json.dumps({k: report[k] for k in ("same_rows", "throughput_ratio_engine_over_ray_data",
                                             "throughput_ratio_engine_unchained_over_ray_data", "output_rows")}))
    for label, name in (("chained", "engine"), ("unchained", "engine_unchained")):
        print(f"engine {label}: {report[name]['rows_per_s_median'] / 1e6:.2f} M rows/s, "
              f"{report[name]['seconds_median']:.2f} s")
    print(f"first full run: engine {first_run['engine']:.2f} s, Ray Data {first_run['ray_data']:.2f} s "
          f"({report['first_full_run_ratio_engine_over_ray_data']:.2f}x)")
    print(f"Ray Data {report['ray_data']['rows_per_s_median'] / 1e6:.2f} M rows/s; "
          f"load {report['load_average_1m_start_end'][0]:.2f} -> {report['load_average_1m_start_end'][1]:.2f}")
    for label, measured in (("chained", overhead), ("unchained", overhead_unchained)):
        print(f"no-op overhead {label}: {measured['amortized_ms_per_batch_per_stage']:.3f} ms/batch/stage amortized, "
              f"{measured['latency_ms_per_batch_per_stage_median']:.3f} ms/batch/stage latency "
              f"(raw Ray actor call {measured['baseline_raw_ray_actor_call_ms_median']:.3f} ms)")
    return 0 if same else 1
