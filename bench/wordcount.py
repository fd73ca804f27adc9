"""Word-count throughput: the engine vs Ray Data, Polars, DuckDB and Daft, same corpus, same run.

``python -m bench wordcount --size 256MiB`` generates (once, cached) a deterministic Zipf
corpus with ``datasets.text`` and runs each system's word count on it as a whole Python
process, alternating systems, ``--repeat`` times (see ``bench.wordcount_systems`` for
exactly what each runs).  Each system is also timed on a one-line input (its start-up).
Throughput = bytes / (median time on the corpus - median time on one line).  Also:

- every peer's output is compared word for word with the engine's (``bench.wordcount_report``);
- the engine's start-up is compared with a bare ``ray.init(); ray.shutdown()`` process,
  alternating within the start-up rounds;
- numba's compile cost on a fresh cache: ``python -m engine.kernels`` and one engine
  one-line process, each with an empty temporary ``NUMBA_CACHE_DIR``;
- the engine's 1 MiB job latency with the cluster up, and an exact ``Counter`` oracle check;
- peak summed RSS of each process tree, and the load average around every run.

With ``--address auto`` the engine and Ray Data run on a running ``ray start --head``
cluster; start-up then means connecting.  Writes ``bench/results/wordcount.json``,
``wordcount.png`` (throughput by system and size) and ``wordcount_scaling.png`` (the
engine with 1 and 2 workers).  Split into ``wordcount_systems`` (the runners),
``wordcount_measure`` (timed processes, corpora), ``wordcount_report`` (agreement,
figures, targets, charts) and ``wordcount_profile`` (``--profile``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.wordcount_measure import corpus_bytes, ensure_corpus, ensure_one_line, timed_process
from bench.wordcount_report import (check_targets, compare_outputs, engine_ratios, plot, print_table,
                                    summarize_system)
from bench.wordcount_systems import BARE_RAY, BARE_RAY_CONNECT, CLUSTER_SYSTEMS, SYSTEMS, run_one

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA_DIR = Path("/tmp/bench-wordcount")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench wordcount``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench wordcount",
        description="Word-count throughput of the engine and its peers (Ray Data, Polars, DuckDB with 2 threads, "
                    "Daft's native runner) on the same generated corpus, each run as a whole process, alternating, "
                    "repeated; start-up (the time on a one-line input) is subtracted and reported separately, and "
                    "every peer's output is checked word for word against the engine's.",
        epilog="Examples:\n  python -m bench wordcount --size 256MiB\n"
               "  python -m bench wordcount --size 1MiB,256MiB,1GiB --repeat 3\n"
               "  python -m bench wordcount --size 64MiB --systems engine,polars --repeat 1\n"
               "  ray start --head --num-cpus 2 && python -m bench wordcount --address auto --size 256MiB",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", default=None,
                        help="corpus size(s): repeatable or comma-separated, e.g. 1MiB,256MiB,1GiB (default 256MiB)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repetitions: in each, every size runs every system once, then the start-up rounds; "
                             "medians are reported (default 3)")
    parser.add_argument("--startup-repeat", type=int, default=2,
                        help="one-line (start-up) runs per system per repetition, alternating with a bare Ray "
                             "process (default 2: start-up is the noisiest part of a whole-process time)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated subset of {','.join(SYSTEMS)} (default all; engine-1worker is the "
                             "engine with one worker, for the scaling chart; with --address only "
                             f"{','.join(CLUSTER_SYSTEMS)} are run)")
    parser.add_argument("--address", default=None,
                        help="run the engine and Ray Data on a running Ray cluster ('auto': the one `ray start --head` "
                             "started here); start-up then means connecting (default: each process starts its own "
                             "embedded 2-CPU cluster)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="directory for wordcount.json, wordcount.png, wordcount_scaling.png (default bench/results)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"where corpora are cached and outputs and logs written (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--latency-repeat", type=int, default=5,
                        help="timed 1 MiB job submits with the cluster up (default 5; 0 skips the latency measurement)")
    parser.add_argument("--no-compile-cost", action="store_true",
                        help="skip measuring numba's compile cost on a fresh cache (two extra processes)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one engine run on the largest size with py-spy (wordcount.profile.txt)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds one process may take before it and its process tree are killed (default 900)")
    return parser


def parse_sizes(values: list[str] | None) -> list[str]:
    """Sizes from repeatable/comma-separated ``--size`` values, smallest first, validated."""
    from datasets.text import parse_size

    sizes = [s.strip() for v in (values or ["256MiB"]) for s in v.split(",") if s.strip()]
    for size in sizes:
        if parse_size(size) < 1:
            raise ValueError(f"--size must be at least 1 byte, got {size!r}")
    return sorted(dict.fromkeys(sizes), key=parse_size)


def versions() -> dict[str, str]:
    """Versions of Python and of every library the systems use."""
    import importlib.metadata as metadata

    found = {"python": platform.python_version()}
    for package in ("ray", "pyarrow", "polars", "duckdb", "daft", "numba", "numpy", "psutil"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "missing"
    return found


def machine() -> dict[str, Any]:
    """Cores, memory and platform of this machine."""
    import psutil

    return {"cores": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total, "platform": platform.platform()}


def _run(args: argparse.Namespace, argv: list[str], log: str, failures: list[dict], where: dict[str, Any],
         **options: Any) -> dict[str, Any] | None:
    """One timed process; a failure is recorded (and printed) and None returned."""
    try:
        return timed_process(argv, args.data_dir / "logs" / f"{log}.log", args.timeout, args.address, **options)
    except RuntimeError as error:
        failures.append({**where, "error": str(error)[:2000]})
        print(f"  {log} FAILED: {str(error).splitlines()[0]}", file=sys.stderr)
        return None


def bench_all(sizes: list[str], systems: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Every run: per repetition, each size with the systems alternating, then start-up rounds
    (each system and a bare Ray process on one line, alternating).  Start-up does not depend
    on the corpus, so its median is subtracted from every size's median."""
    corpora = {size: ensure_corpus(args.data_dir, size) for size in sizes}
    one_line = ensure_one_line(args.data_dir, corpora[sizes[0]])
    (args.data_dir / "logs").mkdir(parents=True, exist_ok=True)
    corpus_runs = {size: {s: [] for s in systems} for size in sizes}
    startup_runs: dict[str, list[dict]] = {s: [] for s in systems + ["bare-ray"]}
    agreement: dict[str, list[dict]] = {size: [] for size in sizes}
    failures: list[dict] = []
    address = [args.address] if args.address else []
    bare = [sys.executable, "-c", BARE_RAY_CONNECT if args.address else BARE_RAY]
    for repetition in range(args.repeat):
        for size in sizes:
            outputs: dict[str, Path] = {}
            for system in systems:
                out = args.data_dir / "out" / f"{system}-{size}"
                shutil.rmtree(out, ignore_errors=True)
                run = _run(args, [system, str(corpora[size]), str(out), *address], f"{system}-{size}-{repetition}",
                           failures, {"size": size, "system": system, "repetition": repetition})
                if run is None:
                    continue
                corpus_runs[size][system].append(run)
                outputs[system] = out
                print(f"  {size:>8} #{repetition} {system:15s} {run['wall_s']:8.2f}s  peak RSS "
                      f"{run['peak_rss_bytes'] / 2**20:7.0f} MiB  load {run['load_1min_before']:.1f}", file=sys.stderr)
            agreement[size].append(compare_outputs(outputs))
        for round_ in range(args.startup_repeat):
            for system in systems + ["bare-ray"]:
                out = args.data_dir / "out" / f"{system}-one-line"
                shutil.rmtree(out, ignore_errors=True)
                argv = [system, str(one_line), str(out), *address]
                run = _run(args, argv, f"{system}-one-line-{repetition}-{round_}", failures,
                           {"size": "one-line", "system": system, "repetition": repetition},
                           **({"command": bare} if system == "bare-ray" else {}))
                if run is not None:
                    startup_runs[system].append(run)
                    print(f"  one line #{repetition}.{round_} {system:15s} {run['wall_s']:8.2f}s", file=sys.stderr)
    report: dict[str, Any] = {}
    for size in sizes:
        nbytes = corpus_bytes(corpora[size])
        results = {s: summarize_system(nbytes, corpus_runs[size][s], startup_runs[s]) for s in systems}
        report[size] = {"bytes": nbytes, "files": len(list(corpora[size].glob("*.txt"))), "corpus": str(corpora[size]),
                        "systems": results, "ratios": engine_ratios(results),
                        "ratios_in_process": engine_ratios(results, "mb_s_net_in_process"),
                        "agreement": agreement[size][-1],
                        "all_repetitions_agree": all(a["all_agree"] for a in agreement[size]),
                        "failures": [f for f in failures if f["size"] in (size, "one-line")]}
    return {"sizes": report, "startup_runs": startup_runs, "one_line": one_line}


def summarize_startup(startup_runs: dict[str, list[dict]], address: str | None) -> dict[str, Any] | None:
    """The engine's one-line process against a bare Ray process, measured alternately."""
    engine, bare = startup_runs.get("engine"), startup_runs.get("bare-ray")
    if not engine or not bare:
        return None
    engine_s = statistics.median(r["wall_s"] for r in engine)
    bare_s = statistics.median(r["wall_s"] for r in bare)
    # Ray's own start is bimodal here (``ray.init`` waits 1.0 s or 2.0 s for its raylet to
    # register with the GCS), so with a few runs the medians can fall in different modes: the means
    # are reported beside them.
    engine_mean = statistics.fmean(r["wall_s"] for r in engine)
    bare_mean = statistics.fmean(r["wall_s"] for r in bare)
    return {"meaning": "connecting to the running cluster" if address else "starting an embedded 2-CPU cluster",
            "engine_median_s": engine_s, "bare_ray_median_s": bare_s, "difference_s": engine_s - bare_s,
            "engine_mean_s": engine_mean, "bare_ray_mean_s": bare_mean, "ratio_of_means": engine_mean / bare_mean,
            "engine_runs_s": [round(r["wall_s"], 3) for r in engine], "bare_ray_runs_s": [round(r["wall_s"], 3) for r in bare],
            "bare_ray_command": BARE_RAY_CONNECT if address else BARE_RAY}


def bench_compile(args: argparse.Namespace, one_line: Path, startup_runs: dict[str, list[dict]]) -> dict[str, Any]:
    """numba's compile cost on a fresh cache: the kernels alone, and one engine one-line process."""
    failures: list[dict] = []
    figures: dict[str, Any] = {}
    kernels = [sys.executable, "-m", "engine.kernels"]
    with tempfile.TemporaryDirectory(prefix="numba-fresh-") as fresh:
        for label, env in (("fresh", {"NUMBA_CACHE_DIR": fresh}), ("cached", {"NUMBA_CACHE_DIR": fresh})):
            run = _run(args, ["kernels"], f"kernels-{label}", failures, {"size": "compile", "system": "kernels"},
                       command=kernels, extra_env=env)
            if run is not None:
                line = run["stdout_tail"].strip().splitlines()[-1]
                figures[f"kernels_{label}"] = json.loads(line)
                figures[f"kernels_{label}_s"] = figures[f"kernels_{label}"]["seconds"]["total"]
    if args.address:  # the cluster's workers do not see this process's NUMBA_CACHE_DIR
        figures["engine_fresh_s"] = figures["engine_cached_s"] = float("nan")
        figures["note"] = "with --address the workers belong to the running cluster: only the kernels are measured"
    else:
        with tempfile.TemporaryDirectory(prefix="numba-fresh-engine-") as fresh:
            out = args.data_dir / "out" / "engine-fresh-cache"
            run = _run(args, ["engine", str(one_line), str(out)], "engine-fresh-cache", failures,
                       {"size": "compile", "system": "engine"}, extra_env={"NUMBA_CACHE_DIR": fresh})
        cached = startup_runs.get("engine") or []
        figures["engine_fresh_s"] = run["wall_s"] if run else float("nan")
        figures["engine_cached_s"] = statistics.median(r["wall_s"] for r in cached) if cached else float("nan")
    figures["failures"] = failures
    return figures


def bench_latency(sizes: list[str], args: argparse.Namespace) -> dict[str, Any] | None:
    """The engine's 1 MiB job latency with the cluster up, plus the exact oracle checks."""
    small = ensure_corpus(args.data_dir, "1MiB")
    largest = ensure_corpus(args.data_dir, sizes[-1])
    out = args.data_dir / "out" / "engine-latency"
    argv = ["engine-latency", str(small), str(largest / "part-00000.txt"), str(out), str(args.latency_repeat)]
    run = _run(args, argv + ([args.address] if args.address else []), "engine-latency", [],
               {"size": "1MiB", "system": "engine-latency"})
    if run is None:
        return None
    return {**run["reported"], "peak_rss_bytes": run["peak_rss_bytes"], "process_wall_s": run["wall_s"]}


def _check_arguments(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    sizes = parse_sizes(args.size)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not systems or any(s not in SYSTEMS for s in systems):
        raise ValueError(f"--systems must be a comma-separated subset of {','.join(SYSTEMS)}, got {args.systems!r}")
    if args.address:
        systems = [s for s in systems if s in CLUSTER_SYSTEMS]
        if not systems:
            raise ValueError(f"--address runs only {','.join(CLUSTER_SYSTEMS)}; --systems names none of them")
    if args.repeat < 1 or args.startup_repeat < 1:
        raise ValueError(f"--repeat and --startup-repeat must be at least 1, got {args.repeat} and {args.startup_repeat}")
    if args.latency_repeat < 0:
        raise ValueError(f"--latency-repeat must be 0 or more, got {args.latency_repeat}")
    return sizes, systems


def main(argv: list[str]) -> int:
    """Run the benchmark; print a table; write JSON and PNGs.  Returns the exit status."""
    if argv and argv[0] == "--run-one":
        return run_one(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        sizes, systems = _check_arguments(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "suite": "wordcount", "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "versions": versions(),
        "options": {"sizes": sizes, "repeat": args.repeat, "startup_repeat": args.startup_repeat, "systems": systems,
                    "latency_repeat": args.latency_repeat, "address": args.address},
        "load_average_start": os.getloadavg(),
        "method": "each system runs as a whole process; throughput = bytes / (median time on the corpus - median "
                  "time on a one-line input); systems alternate within each repetition; peak RSS = max over 0.2 s "
                  "samples of the summed RSS of the process tree (driver, GCS, raylet, workers)"
                  + ("; on a running cluster (--address): start-up means connecting, and the cluster's own "
                     "processes are not in the measured tree" if args.address else ""),
    }
    print(f"word count on {', '.join(sizes)}: {', '.join(systems)} alternating, {args.repeat} repetitions",
          file=sys.stderr)
    runs = bench_all(sizes, systems, args)
    report["sizes"] = runs["sizes"]
    report["startup"] = summarize_startup(runs["startup_runs"], args.address)
    if "engine" in systems and not args.no_compile_cost:
        print("numba compile cost on a fresh cache ...", file=sys.stderr)
        report["compile"] = bench_compile(args, runs["one_line"], runs["startup_runs"])
    if "engine" in systems and args.latency_repeat:
        print("engine small-job latency (cluster up) and oracle check ...", file=sys.stderr)
        report["engine_small_job"] = bench_latency(sizes, args)
    if args.profile and "engine" in systems:
        from bench.wordcount_profile import profile_engine

        print("profiling one engine run with py-spy ...", file=sys.stderr)
        profile = profile_engine(sizes[-1], args, args.out / "wordcount.profile.txt")
        report["profile"] = {"size": sizes[-1], "file": str(args.out / "wordcount.profile.txt"),
                             "in_tasks_top": profile["in_tasks"][:15], "self_top": profile["self"][:15]}
    report["load_average_end"] = os.getloadavg()
    report["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report["targets"] = check_targets(report)
    report["targets_in_process_cross_check"] = check_targets(report, "mb_s_net_in_process")
    (args.out / "wordcount.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "wordcount.png", args.out / "wordcount_scaling.png")
    print_table(report)
    print(f"wrote {args.out / 'wordcount.json'}, {args.out / 'wordcount.png'} and {args.out / 'wordcount_scaling.png'}")
    agree = all(e["all_repetitions_agree"] and not e["failures"] for e in report["sizes"].values())
    small = report.get("engine_small_job") or {}
    oracle = all(v["identical"] for v in small.get("oracle", {}).values())
    return 0 if agree and oracle and (small or not args.latency_repeat or "engine" not in systems) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
