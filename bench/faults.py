"""``python -m bench faults``: every pattern under the loss of each kind of process, in one run.

For each pattern, an undisturbed run and runs with one kind of process killed mid-run,
on the same data in the same run: the time of each against its undisturbed run, and
whether its results are exact (checked against the undisturbed output or a plain-Python
oracle).  Patterns and their modules (each exposes ``run(args) -> list[dict]``):

- ``mapreduce`` (bench/faults_mapreduce.py): word count; a worker, the primary master,
  the standby master, the supervisor (worker pool) and the spare worker killed; a slowed
  worker with and without speculation; and the embedded cluster's GCS server killed under
  a driver subprocess (bench/faults_node_loss.py), which restarts it and resumes;
- ``pipeline`` (bench/faults_pipeline.py): a stage replica killed; sink rows exactly once;
- ``scatter-gather`` (bench/faults_scatter_gather.py): a shard host killed under
  sequential queries: answered, partial, latency, exact answers after recovery;
- ``lambda`` (bench/faults_lambda.py): a view shard and a speed-layer replica killed
  during ingest and queries: nothing acknowledged lost, exact final answers;
- ``multinode`` (bench/faults_multinode.py): word count on a simulated 3-node cluster with
  a worker node removed at 25/50/75% of the map phase or in the reduce phase, or its
  raylet SIGKILLed: job time, how soon the master noticed, tasks run again.

Each pattern runs in a process of its own (``--in-process --rows-to FILE``), with its own
embedded cluster: a fault cannot leak into the next pattern, and a pattern may build the
cluster it needs (Ray lets one process start an embedded cluster only once).  Writes
``faults.json`` (rows, load average before and after) and ``faults.png`` (one panel per
pattern: time as a multiple of the undisturbed run).  Exits 1 naming every scenario
whose results were not exact.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]

# One line per pattern module: name -> module exposing ``run(args) -> list[dict]``.
PATTERNS = {
    "mapreduce": "bench.faults_mapreduce",
    "pipeline": "bench.faults_pipeline",
    "scatter-gather": "bench.faults_scatter_gather",
    "lambda": "bench.faults_lambda",
    "multinode": "bench.faults_multinode",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    parser = argparse.ArgumentParser(prog="python -m bench faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patterns", default=",".join(PATTERNS),
                        help=f"comma-separated patterns to run (default all: {','.join(PATTERNS)})")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario; the median is reported (default 1)")
    parser.add_argument("--size", default="256MiB", help="MapReduce corpus size (default 256MiB)")
    parser.add_argument("--split-size", default="16MiB", help="bytes per MapReduce map task (default 16MiB)")
    parser.add_argument("--workers", type=int, default=2, help="MapReduce worker actors (default 2)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of each pattern's embedded cluster (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny data and paced tasks: a smoke run that checks every scenario, no figures")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "engine-bench",
                        help="where corpora and outputs are kept (default $TMPDIR/engine-bench)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for faults.json and faults.png")
    parser.add_argument("--in-process", action="store_true",
                        help="run the patterns in this process, one after another (Ray starts an embedded "
                             "cluster once per process: use it with one pattern)")
    parser.add_argument("--rows-to", type=Path, default=None,
                        help="with --in-process: only write the rows as JSON to this file (no report)")
    args = parser.parse_args(argv)
    args.patterns = [name.strip() for name in args.patterns.split(",") if name.strip()]
    unknown = [name for name in args.patterns if name not in PATTERNS]
    if unknown or not args.patterns:
        parser.error(f"unknown pattern {', '.join(unknown) or '(none given)'}; choose from {', '.join(PATTERNS)}")
    if args.repeat < 1:
        parser.error(f"--repeat must be >= 1, got {args.repeat}")
    if args.quick:
        args.size, args.split_size = "2MiB", "256KiB"
    return args


def run_in_process(args: argparse.Namespace) -> list[dict]:
    """The rows of every chosen pattern, run here one after another (one that raises is
    a not-exact row)."""
    from bench.faults_common import failed_row

    rows: list[dict] = []
    for pattern in args.patterns:
        print(f"== {pattern}", flush=True)
        try:
            rows += importlib.import_module(PATTERNS[pattern]).run(args)
        except Exception as error:  # report the pattern as failed and go on with the others
            rows.append(failed_row(pattern, "(pattern did not finish)", error))
    return rows


def run_isolated(args: argparse.Namespace) -> list[dict]:
    """The rows of every chosen pattern, each run by ``python -m bench.faults
    --in-process`` in a process of its own (its output shown as it comes)."""
    from bench.faults_common import failed_row

    rows: list[dict] = []
    for pattern in args.patterns:
        with tempfile.TemporaryDirectory(prefix="bench-faults-") as scratch:
            target = Path(scratch) / "rows.json"
            command = [sys.executable, "-m", "bench.faults", "--in-process", "--rows-to", str(target),
                       "--patterns", pattern, "--repeat", str(args.repeat), "--size", args.size,
                       "--split-size", args.split_size, "--workers", str(args.workers), "--cpus", str(args.cpus),
                       "--data", str(args.data), *(["--quick"] if args.quick else [])]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
            done = subprocess.run(command, cwd=ROOT, env=env)
            if done.returncode == 0 and target.exists():
                rows += json.loads(target.read_text())
            else:
                rows.append(failed_row(pattern, "(pattern did not finish)", RuntimeError(
                    f"its process exited {done.returncode} (output above)")))
    return rows


def main(argv: list[str]) -> int:
    """Run the chosen patterns' scenarios, write the report and chart; 1 if any result is not exact."""
    args = parse_args(argv)
    started, load_before = time.time(), os.getloadavg()
    if args.rows_to is not None:
        args.rows_to.write_text(json.dumps(run_in_process(args), default=str))
        return 0
    rows = run_in_process(args) if args.in_process else run_isolated(args)
    report = {
        "suite": "faults", "patterns": args.patterns, "repeat": args.repeat, "quick": args.quick,
        "size": args.size, "split_size": args.split_size, "workers": args.workers, "cpus": args.cpus,
        "rows": rows, "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "wall_s": time.time() - started,
        "python": platform.python_version(), "cores": os.cpu_count(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=2, default=str))
    chart(rows, args.out / "faults.png")
    for row in rows:
        ratio = row["ratio_to_undisturbed"]
        seconds = "   —   " if row["seconds"] is None else f"{row['seconds']:7.2f}s"
        print(f"{row['pattern']:15s} {row['scenario']:58s} {seconds} "
              f"{'' if ratio is None else f'{ratio:5.2f}x'}  exact: {row['exact']}  {row['notes']}")
    wrong = [f"{row['pattern']}: {row['scenario']}" for row in rows if not row["exact"]]
    if wrong:
        print("error: results not exact in " + "; ".join(wrong), file=sys.stderr)
        return 1
    return 0


def chart(rows: list[dict], path: Path) -> None:
    """One panel per pattern: each scenario's time as a multiple of its undisturbed run
    (red: results not exact).  Without matplotlib (the ``bench`` extra) it says so and
    draws nothing: the JSON report holds every figure."""
    try:
        import matplotlib
    except ImportError:
        print(f"note: {path.name} not drawn: matplotlib is not installed (pip install '.[bench]')", file=sys.stderr)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    patterns = list(dict.fromkeys(row["pattern"] for row in rows))
    counts = [sum(row["pattern"] == pattern for row in rows) for pattern in patterns]
    figure, axes = plt.subplots(len(patterns), 1, squeeze=False, gridspec_kw={"height_ratios": counts},
                                figsize=(10, 1.2 + sum(0.4 * count + 0.7 for count in counts)))
    for axis, pattern in zip(axes[:, 0], patterns):
        mine = [row for row in rows if row["pattern"] == pattern]
        ratios = [row["ratio_to_undisturbed"] or 0.0 for row in mine]
        colors = ["#c44e52" if not row["exact"] else "#4c72b0" if row["baseline"] == row["scenario"] else "#dd8452"
                  for row in mine]
        bars = axis.barh([row["scenario"] for row in mine], ratios, color=colors)
        for bar, row in zip(bars, mine):
            if row["seconds"] is None:
                label = "failed"
            elif row["ratio_to_undisturbed"] is None:  # a figure of its own (e.g. seconds beyond a job)
                label = f" {row['seconds']:.2f}s"
            else:
                label = f" {row['ratio_to_undisturbed']:.2f}x ({row['seconds']:.1f}s)"
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, label, va="center", fontsize=8)
        axis.axvline(1.0, color="grey", linestyle="--", linewidth=0.8)
        axis.invert_yaxis()
        axis.set_title(pattern, fontsize=10)
        axis.tick_params(axis="y", labelsize=8)
    axes[-1, 0].set_xlabel("time / undisturbed run of the same pattern (red: results not exact)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
