"""Turning word-count runs into figures: agreement of outputs, medians and ratios, targets, charts.

Throughput = bytes / (median time on the corpus - median time on a one-line input), each a
whole process.  Ratios compare the engine with each peer from the same run.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

TOP_K = 10
SINGLE_SPACE_SPLITTERS = ("polars", "duckdb", "daft")  # they split on " " only: re-split their tokens


def read_counts(system: str, out: Path) -> Any:
    """A system's output as ``(word: large_string, count: int64)``, normalized to ``str.split()`` words.

    The engine's and Ray Data's words already are whitespace-separated tokens.  Polars,
    DuckDB and Daft split on single spaces only, so their "words" may hold tabs or a CR, and
    double spaces give empty strings (dropped in their queries); re-splitting each of their
    tokens on any whitespace and summing the counts again gives exactly the ``str.split()``
    counts.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(p for p in out.rglob("*.parquet") if not p.name.startswith(("_", ".")))
    table = pa.concat_tables([pq.read_table(p) for p in files]) if files else \
        pa.table({"word": pa.array([], pa.string()), "count": pa.array([], pa.int64())})
    count_column = "count()" if "count()" in table.column_names else "count"
    words = table.column("word").cast(pa.large_string())
    counts = table.column(count_column).cast(pa.int64())
    if system in SINGLE_SPACE_SPLITTERS:
        pieces = pc.utf8_split_whitespace(words.combine_chunks())
        counts = counts.combine_chunks().take(pc.list_parent_indices(pieces))
        words = pc.list_flatten(pieces)
    table = pa.table({"word": words, "count": counts}).group_by("word").aggregate([("count", "sum")])
    return table.rename_columns(["word", "count"]).sort_by("word")


def compare_outputs(outputs: dict[str, Path]) -> dict[str, Any]:
    """Compare every system's normalized (word, count) table with the engine's, word by word.

    Reports per system: total words, distinct words, the top words, and whether the whole
    table (every word and its count) is identical to the engine's.
    """
    import pyarrow.compute as pc

    tables = {system: read_counts(system, path) for system, path in outputs.items()}
    summary: dict[str, Any] = {}
    reference = tables.get("engine")
    for system, table in tables.items():
        order = pc.sort_indices(table, sort_keys=[("count", "descending"), ("word", "ascending")])
        top = table.take(order[:TOP_K])
        summary[system] = {
            "total_words": int(pc.sum(table.column("count")).as_py() or 0),
            "distinct_words": table.num_rows,
            "top": list(zip(top.column("word").to_pylist(), top.column("count").to_pylist())),
            "identical_to_engine": None if reference is None else bool(table.equals(reference)),
        }
    summary["all_agree"] = all(s["identical_to_engine"] is not False for s in summary.values())
    return summary


def mb_per_s(nbytes: int, seconds: float | None) -> float | None:
    """Megabytes (10**6 bytes) per second, or None when ``seconds`` is not positive."""
    return nbytes / 1e6 / seconds if seconds and seconds > 0 else None


def summarize_system(nbytes: int, corpus_runs: list[dict], startup_runs: list[dict]) -> dict[str, Any]:
    """Medians, start-up, net time and throughput of one system on one corpus (None if it never ran)."""
    if not corpus_runs or not startup_runs:
        return {"runs_s": [], "median_s": None, "startup_s": None, "net_s": None, "mb_s": None,
                "mb_s_net_in_process": None, "peak_rss_max_bytes": None}
    median_s = statistics.median(r["wall_s"] for r in corpus_runs)
    startup_s = statistics.median(r["wall_s"] for r in startup_runs)
    net_s = median_s - startup_s
    job_s = statistics.median(r["reported"].get("job_s", 0.0) for r in corpus_runs)
    startup_job_s = statistics.median(r["reported"].get("job_s", 0.0) for r in startup_runs)
    return {
        "runs_s": [round(r["wall_s"], 3) for r in corpus_runs],
        "startup_runs_s": [round(r["wall_s"], 3) for r in startup_runs],
        "startup_connect_s": statistics.median(r["reported"].get("connect_s", 0.0) for r in startup_runs),
        "startup_job_s": startup_job_s,
        "median_s": median_s, "startup_s": startup_s, "net_s": net_s, "mb_s": mb_per_s(nbytes, net_s),
        "mb_s_including_startup": mb_per_s(nbytes, median_s),
        # Cross-check, not the headline: in-process job time on the corpus minus on one line
        # (no cluster start-up or teardown in either).
        "in_process_job_median_s": job_s,
        "mb_s_net_in_process": mb_per_s(nbytes, job_s - startup_job_s),
        "peak_rss_bytes": [r["peak_rss_bytes"] for r in corpus_runs],
        "peak_rss_max_bytes": max(r["peak_rss_bytes"] for r in corpus_runs),
        "peak_private_max_bytes": max(r["peak_private_bytes"] for r in corpus_runs),
        "peak_processes": max(r["peak_processes"] for r in corpus_runs),
        # Where the memory is at the highest peak: summed RSS per kind of process (MiB).
        "peak_rss_mib_by_process": {name: round(rss / 2**20) for name, rss in sorted(
            max(corpus_runs, key=lambda r: r["peak_rss_bytes"]).get("peak_rss_by_process", {}).items(),
            key=lambda item: -item[1])},
        "load_1min": [[round(r["load_1min_before"], 2), round(r["load_1min_after"], 2)] for r in corpus_runs],
    }


def engine_ratios(results: dict[str, dict[str, Any]], key: str = "mb_s") -> dict[str, float]:
    """``engine_vs_PEER``: the engine's throughput over each peer's, from the same run."""
    engine = results.get("engine", {}).get(key)
    return {f"engine_vs_{peer}": engine / figures[key] for peer, figures in results.items()
            if peer != "engine" and engine and figures.get(key)}


def check_targets(report: dict[str, Any], rate_key: str = "mb_s") -> dict[str, Any]:
    """The issue's targets, each with the measured figure and whether it is met (None: not measured)."""
    sizes = report["sizes"]

    def figure(size: str, system: str, key: str) -> Any:
        return sizes.get(size, {}).get("systems", {}).get(system, {}).get(key)

    def ratio(size: str, peer: str) -> Any:
        engine, other = figure(size, "engine", rate_key), figure(size, peer, rate_key)
        return engine / other if engine and other else None

    def target(measured: Any, goal: float, at_most: bool = False) -> dict[str, Any]:
        met = None if measured is None else (measured <= goal if at_most else measured >= goal)
        return {"measured": measured, "goal": goal, "met": met}

    return {
        "1GiB_engine_vs_polars_at_least_1.5x": target(ratio("1GiB", "polars"), 1.5),
        "1GiB_engine_vs_duckdb_at_least_1.5x": target(ratio("1GiB", "duckdb"), 1.5),
        "256MiB_engine_vs_raydata_at_least_15x": target(ratio("256MiB", "raydata"), 15),
        "1GiB_engine_peak_rss_at_most_2GiB": target(figure("1GiB", "engine", "peak_rss_max_bytes"), 2 * 2**30, True),
    }


def plot(report: dict[str, Any], throughput_path: Path, scaling_path: Path) -> None:
    """Two charts: MB/s by system and corpus size; the engine's MB/s with 1 and 2 workers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(report["sizes"])
    systems = [s for s in report["options"]["systems"] if s != "engine-1worker"]
    figure, axes = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(1, len(systems))
    for index, system in enumerate(systems):
        values = [report["sizes"][s]["systems"][system]["mb_s"] or 0.0 for s in sizes]
        positions = [i + (index - (len(systems) - 1) / 2) * width for i in range(len(sizes))]
        bars = axes.bar(positions, values, width, label=system)
        for bar, value in zip(bars, values):
            if value > 0:
                axes.annotate(f"{value:,.0f}" if value >= 10 else f"{value:.1f}",
                              (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(sizes)), sizes)
    if any(report["sizes"][s]["systems"][m]["mb_s"] for s in sizes for m in systems):
        axes.set_yscale("log")
    axes.set_ylabel("MB/s = bytes / (time - start-up), log scale")
    axes.set_title(f"Word count, {report['machine']['cores']} cores, median of {report['options']['repeat']}"
                   + (" (running cluster)" if report["options"].get("address") else ""))
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(throughput_path, dpi=110)
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 4))
    for label, system in (("1 worker", "engine-1worker"), ("2 workers", "engine")):
        values = [report["sizes"][s]["systems"].get(system, {}).get("mb_s") or 0.0 for s in sizes]
        axes.plot(sizes, values, marker="o", label=label)
    axes.set_ylabel("MB/s (start-up excluded)")
    axes.set_title("Engine word count: 1 vs 2 workers")
    axes.legend()
    figure.tight_layout()
    figure.savefig(scaling_path, dpi=110)
    plt.close(figure)


def print_table(report: dict[str, Any]) -> None:
    """A plain-text table of the figures."""
    print(f"{'size':>8} {'system':15} {'median s':>9} {'start-up s':>10} {'net s':>8} {'MB/s':>9} "
          f"{'in-proc MB/s':>12} {'peak RSS MiB':>12}")
    for size, entry in report["sizes"].items():
        for system, figures in entry["systems"].items():
            if figures["median_s"] is None:
                print(f"{size:>8} {system:15} no successful run")
                continue
            rate = "n/a" if figures["mb_s"] is None else f"{figures['mb_s']:,.1f}"
            print(f"{size:>8} {system:15} {figures['median_s']:9.2f} {figures['startup_s']:10.2f} "
                  f"{figures['net_s']:8.2f} {rate:>9} {figures.get('mb_s_net_in_process') or 0:12,.1f}"
                  f" {figures['peak_rss_max_bytes'] / 2**20:12,.0f}")
        for name, ratio in entry["ratios"].items():
            print(f"{size:>8} {name}: {ratio:.2f}x")
        print(f"{size:>8} outputs agree word for word: {entry['all_repetitions_agree']}")
    startup = report.get("startup")
    if startup:
        print(f"start-up ({startup['meaning']}): engine one-line process {startup['engine_median_s']:.2f}s vs bare Ray "
              f"{startup['bare_ray_median_s']:.2f}s (difference {startup['difference_s']:+.2f}s, ratio "
              f"{startup['engine_median_s'] / startup['bare_ray_median_s']:.2f}x); means {startup['engine_mean_s']:.2f}s "
              f"vs {startup['bare_ray_mean_s']:.2f}s ({startup['ratio_of_means']:.2f}x)")
    compile_cost = report.get("compile")
    if compile_cost:
        nan = float("nan")
        print(f"numba on a fresh cache: kernels compile {compile_cost.get('kernels_fresh_s', nan):.1f}s (cached load "
              f"{compile_cost.get('kernels_cached_s', nan):.1f}s); engine one-line process "
              f"{compile_cost.get('engine_fresh_s', nan):.1f}s fresh vs {compile_cost.get('engine_cached_s', nan):.1f}s cached")
    small = report.get("engine_small_job")
    if small:
        print(f"engine 1 MiB job with the cluster up: median {small['median_latency_s'] * 1000:.0f} ms back to back, "
              f"{small['median_latency_after_pause_s'] * 1000:.0f} ms after a 2 s pause; oracle: "
              + ", ".join(f"{k} identical={v['identical']}" for k, v in small["oracle"].items()))
    for name, target in report["targets"].items():
        print(f"target {name}: measured {target['measured']}, met {target['met']}")
