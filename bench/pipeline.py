"""``python -m bench pipeline``: a 3-stage Arrow pipeline (parse -> filter -> project)
against a Ray Data ``map_batches`` chain doing the same work on the same data, in the
same run, plus the per-batch overhead of the pipes measured with no-op stages.

The data is ``--rows`` CSV lines ``id,user,amount,category`` generated vectorized
before any timing.  Each repeat runs the engine and Ray Data alternately (the order
flips every repeat); the median is reported.  Both results are checked to hold the same
rows.  Writes ``bench/results/pipeline.json`` and ``bench/results/pipeline.png``.
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
    parser.add_argument("--replicas", type=str, default="2,1,1",
                        help="engine replicas of parse,filter,project (default 2,1,1)")
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


def run_engine(lines: pa.Table, batch_rows: int, replicas: list[int]) -> pa.Table:
    import engine
    from engine import CollectSink, Pipeline, Stage, TableSource

    stages = [Stage("parse", parse, replicas=replicas[0]), Stage("filter", keep_rows, replicas=replicas[1]),
              Stage("project", project, replicas=replicas[2])]
    result = engine.run(Pipeline(TableSource(lines, batch_rows), stages, CollectSink())).result()
    return result.table


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


def measure_overhead(batches: int, stages: int) -> dict[str, float]:
    """No-op stages: amortized seconds per batch per stage, and one batch's latency per stage."""
    import engine
    from engine import CallbackSink, CollectSink, LiveFeed, Pipeline, Stage, TableSource

    table = pa.table({"x": pa.array(np.arange(batches * 100, dtype=np.int64))})
    chain = [Stage(f"noop{i}", noop) for i in range(stages)]
    engine.run(Pipeline(TableSource(table.slice(0, 1000), 100), chain, CollectSink())).result()  # warm-up
    started = time.perf_counter()
    result = engine.run(Pipeline(TableSource(table, 100), chain, CollectSink())).result()
    elapsed = time.perf_counter() - started
    assert result.table is not None and result.table.num_rows == table.num_rows

    arrived = threading.Event()
    feed = LiveFeed(capacity=1)
    handle = engine.run(Pipeline(feed, chain, CallbackSink(lambda table: arrived.set())))
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


def _chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["engine pipeline", "Ray Data map_batches"]
    values = [report["engine"]["rows_per_s_median"] / 1e6, report["ray_data"]["rows_per_s_median"] / 1e6]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.bar(names, values, color=["tab:blue", "tab:gray"])
    axis.set_ylabel("million input rows / s")
    axis.set_title(f"parse -> filter -> project, {report['rows'] / 1e6:.0f}M rows (median of {report['repeats']})")
    for x, value in enumerate(values):
        axis.text(x, value, f"{value:.2f}", ha="center", va="bottom")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str]) -> int:
    """Run the benchmark and write the JSON report (and a chart)."""
    args = _parse_args(argv)
    replicas = [int(n) for n in args.replicas.split(",")]
    if len(replicas) != 3 or min(replicas) < 1:
        raise SystemExit("--replicas needs three counts >= 1, e.g. 2,1,1")
    import ray

    from engine.cluster import connect

    print(f"generating {args.rows:,} lines ...", flush=True)
    lines = make_lines(args.rows)
    info = connect(num_cpus=args.cpus)
    try:
        # Warm both paths once (worker start-up, imports) on a small slice.
        run_engine(lines.slice(0, 4 * args.batch_rows), args.batch_rows, replicas)
        run_ray_data(lines.slice(0, 4 * args.batch_rows), args.batch_rows)
        engine_times: list[float] = []
        ray_times: list[float] = []
        same = True
        for repeat in range(args.repeats):
            order = ["engine", "ray_data"] if repeat % 2 == 0 else ["ray_data", "engine"]
            tables: dict[str, pa.Table] = {}
            for name in order:
                if name == "engine":
                    seconds, tables[name] = _timed(lambda: run_engine(lines, args.batch_rows, replicas))
                    engine_times.append(seconds)
                else:
                    seconds, tables[name] = _timed(lambda: run_ray_data(lines, args.batch_rows))
                    ray_times.append(seconds)
                print(f"repeat {repeat}: {name:9s} {seconds:7.2f} s  ({args.rows / seconds / 1e6:.2f} M rows/s)", flush=True)
            same = same and canonical(tables["engine"]).equals(canonical(tables["ray_data"]))
            output_rows = tables["engine"].num_rows
            del tables
        print("measuring per-batch overhead with no-op stages ...", flush=True)
        overhead = measure_overhead(args.noop_batches, 3)
    finally:
        ray.shutdown()

    engine_s, ray_s = statistics.median(engine_times), statistics.median(ray_times)
    report: dict[str, Any] = {
        "suite": "pipeline",
        "rows": args.rows,
        "batch_rows": args.batch_rows,
        "batches": -(-args.rows // args.batch_rows),
        "repeats": args.repeats,
        "cpus": info.cpus,
        "engine_replicas": dict(zip(["parse", "filter", "project"], replicas)),
        "output_rows": output_rows,
        "same_rows": same,
        "engine": {"seconds": engine_times, "seconds_median": engine_s, "rows_per_s_median": args.rows / engine_s},
        "ray_data": {"seconds": ray_times, "seconds_median": ray_s, "rows_per_s_median": args.rows / ray_s},
        "throughput_ratio_engine_over_ray_data": ray_s / engine_s,
        "overhead_noop": overhead,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline.json").write_text(json.dumps(report, indent=2))
    _chart(report, args.out / "pipeline.png")
    print(json.dumps({k: report[k] for k in ("same_rows", "throughput_ratio_engine_over_ray_data", "output_rows")}))
    print(f"engine {report['engine']['rows_per_s_median'] / 1e6:.2f} M rows/s, "
          f"Ray Data {report['ray_data']['rows_per_s_median'] / 1e6:.2f} M rows/s, "
          f"ratio {report['throughput_ratio_engine_over_ray_data']:.2f}; overhead "
          f"{overhead['amortized_ms_per_batch_per_stage']:.3f} ms/batch/stage amortized, "
          f"{overhead['latency_ms_per_batch_per_stage_median']:.3f} ms/batch/stage latency "
          f"(raw Ray actor call {overhead['baseline_raw_ray_actor_call_ms_median']:.3f} ms)")
    return 0 if same else 1
