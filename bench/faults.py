"""``python -m bench faults``: MapReduce word count under failures, all in one run.

Scenarios on the same corpus and cluster: undisturbed; one worker killed at 50% of the
map phase; the primary master killed at 50% of the map phase; one worker slowed 5x,
with and without speculation.  Reports each time and its ratio to the undisturbed run,
checks every output equals the undisturbed output, and writes JSON and a PNG chart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _corpus(size: str, directory: Path) -> Path:
    from datasets.text import TextCorpusSpec, parse_size, write_text_corpus

    spec = TextCorpusSpec(parse_size(size))
    target = directory / f"corpus-{size}"
    marker = target / ".complete"
    if not marker.exists():
        write_text_corpus(spec, target, progress=True)
        marker.write_text("ok")
    return target


def scenarios(maps: int) -> dict:
    """The fault plans, keyed by scenario name (``maps`` = map tasks of the job)."""
    from engine.testing import ChaosPlan, MasterChaos, WorkerChaos

    half = max(1, maps // 2)
    return {
        "undisturbed": (ChaosPlan(), {}),
        "worker killed at 50% of maps": (ChaosPlan(workers={0: WorkerChaos(die_after_tasks=max(1, half // 2),
                                                                           die_in_phase="map")}), {}),
        "master killed at 50% of maps": (ChaosPlan(master=MasterChaos(die_after_completions=half)), {}),
        "worker slowed 5x, speculation on": (ChaosPlan(workers={0: WorkerChaos(slowdown=5.0)}), {"speculation": True}),
        "worker slowed 5x, speculation off": (ChaosPlan(workers={0: WorkerChaos(slowdown=5.0)}), {"speculation": False}),
    }


def main(argv: list[str]) -> int:
    """Run the fault benchmark; see ``--help``."""
    parser = argparse.ArgumentParser(prog="python -m bench faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="256MiB", help="corpus size (default 256MiB)")
    parser.add_argument("--split-size", default="16MiB", help="bytes per map task (default 16MiB)")
    parser.add_argument("--workers", type=int, default=2, help="worker actors (default 2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario (median reported; default 1)")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "engine-bench",
                        help="where corpora are generated and kept (default $TMPDIR/engine-bench)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for faults.json and faults.png")
    args = parser.parse_args(argv)

    import engine
    from datasets.text import parse_size
    from engine.io.sources import TextSource
    from jobs.wordcount_job import wordcount_job

    corpus = _corpus(args.size, args.data)
    split_size = parse_size(args.split_size)
    maps = len(TextSource([str(corpus)], split_size=split_size).plan_splits())
    info = engine.connect(num_cpus=args.workers)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {}
    details: dict[str, list[dict]] = {}
    reference = None
    plans = scenarios(maps)
    warm = wordcount_job([str(corpus / "part-00000.txt")], str(args.data / "out-warm"), reducers=2 * args.workers,
                         split_size=split_size, options=engine.JobOptions(overwrite=True, workers=args.workers))
    engine.run(warm).result()
    for repeat in range(args.repeat):
        for name, (plan, extra) in plans.items():
            options = engine.JobOptions(overwrite=True, workers=args.workers, heartbeat_interval_s=0.2,
                                        snapshot_every_tasks=1, **extra)
            job = wordcount_job([str(corpus)], str(args.data / "out-faults"), reducers=2 * args.workers,
                                split_size=split_size, options=options)
            started = time.perf_counter()
            result = engine.run(job, chaos=plan).result()
            elapsed = time.perf_counter() - started
            table = result.table()
            if reference is None:
                reference = table
            same = table.equals(reference)
            times.setdefault(name, []).append(elapsed)
            details.setdefault(name, []).append({
                "seconds": elapsed, "same_output": same, "failed_workers": len(result.details["failed_workers"]),
                "takeover": result.details["takeover"], "speculative_attempts": result.details["speculative_attempts"],
                "max_map_attempt": max(a for t, a in result.attempts.items() if t.startswith("map")),
                "timeline": result.details.get("timeline", {}),
            })
            print(f"[{repeat}] {name:36s} {elapsed:7.2f}s  same output: {same}  "
                  f"failed workers: {len(result.details['failed_workers'])}  takeover: {result.details['takeover']}  "
                  f"speculative: {result.details['speculative_attempts']}", flush=True)
            if not same:
                print(f"error: {name} produced a different output", file=sys.stderr)
                return 1
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["undisturbed"]
    report = {
        "suite": "faults", "corpus": str(corpus), "bytes": sum(p.stat().st_size for p in corpus.glob("*.txt")),
        "map_tasks": maps, "workers": args.workers, "cpus": info.cpus, "repeat": args.repeat,
        "seconds": medians, "ratio_to_undisturbed": {n: v / base for n, v in medians.items()},
        "runs": details, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "python": platform.python_version(), "cores": os.cpu_count(),
        "targets": {"worker killed": "<= 1.5x", "master takeover": "<= undisturbed + 2 s + work since last snapshot",
                    "slowed worker with speculation": "<= 1.3x"},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=2))
    _chart(medians, base, args.out / "faults.png")
    print(json.dumps({"seconds": medians, "ratio_to_undisturbed": report["ratio_to_undisturbed"]}, indent=2))
    engine.shutdown()
    return 0


def _chart(medians: dict[str, float], base: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(medians)
    figure, axis = plt.subplots(figsize=(9, 4))
    bars = axis.barh(names, [medians[n] for n in names], color=["#4c72b0"] + ["#dd8452"] * (len(names) - 1))
    for bar, name in zip(bars, names):
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {medians[name]:.1f}s ({medians[name] / base:.2f}x)",
                  va="center")
    axis.invert_yaxis()
    axis.set_xlabel("job time (s)")
    axis.set_title("MapReduce word count under failures")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
