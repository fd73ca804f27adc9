"""Word count on a simulated 3-node cluster, undisturbed and with a worker node lost.

Each run starts its own cluster with ``ray.cluster_utils.Cluster`` (a head with no CPUs
for the pool and masters, two worker nodes with 1 CPU each, all on this machine) in a
child process, submits the word-count job to it as a user's driver would
(``engine.connect(address=...)``) and removes one worker node that hosts a worker of the
job: at 25%, 50% or 75% of the map phase, or in the reduce phase; one more scenario kills
the node's raylet without warning (SIGKILL: Ray hears nothing, so the loss is noticed
through failing calls and, later, Ray's health checks).  The lost capacity does not come
back.  Reports, per scenario, the median job time against the undisturbed run, how soon
after the removal the master noticed (from the job's recovery timeline), the tasks run
again, and whether the output equals the undisturbed run's.

Run alone: ``python -m bench.faults_multinode [--size 256MiB] [--repeat 3]``; also part of
``python -m bench faults``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

SCENARIOS = {
    "undisturbed": None,
    "node removed at 25% of maps": ("maps", 0.25, True),
    "node removed at 50% of maps": ("maps", 0.50, True),
    "node removed at 75% of maps": ("maps", 0.75, True),
    "node removed in the reduce phase": ("reduce", 0.0, True),
    "node killed (SIGKILL) at 50% of maps": ("maps", 0.50, False),
}


def _corpus(size: str, directory: Path) -> Path:
    from datasets.text import TextCorpusSpec, parse_size, write_text_corpus

    target = directory / f"corpus-{size}"
    if not (target / ".complete").exists():
        write_text_corpus(TextCorpusSpec(parse_size(size)), target, progress=True)
        (target / ".complete").write_text("ok")
    return target


def _victim(handle, nodes: list) -> tuple[object, dict]:
    """The worker node of the job's first worker (sorted by name) that runs on one, and
    where each of the job's workers runs."""
    import ray

    where = {}
    for name in sorted(handle.status().get("workers") or []):
        try:
            where[name] = ray.get(ray.get_actor(name, namespace="engine").ping.remote(), timeout=5)["node"]
        except Exception as error:  # a worker still starting
            where[name] = f"{type(error).__name__}: {str(error)[:300]}"
    for name, node_id in where.items():
        for node in nodes:
            if node.node_id == node_id:
                return node, where
    return nodes[-1], where


def one_run(scenario: str, corpus: str, output: str, split_size: str, reducers: int) -> dict:
    """One scenario on a fresh simulated cluster (called in a child process)."""
    from ray.cluster_utils import Cluster

    import engine
    from datasets.text import parse_size
    from jobs.wordcount_job import wordcount_job

    trigger = SCENARIOS[scenario]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
    cluster.wait_for_nodes()
    try:
        engine.connect(address=cluster.address)
        job = wordcount_job([corpus], output, reducers=reducers, split_size=parse_size(split_size),
                            options=engine.JobOptions(overwrite=True, progress=False))
        submitted = time.time()
        handle = engine.run(job)
        removed: dict = {}
        if trigger is not None:
            threading.Thread(target=_remove_when, args=(cluster, handle, nodes, trigger, removed), daemon=True).start()
        result = handle.result(timeout_s=900)
        finished = time.time()
        recovery = result.details.get("recovery", {})
        noticed = None
        if removed.get("at") is not None:
            after = [loss["noticed_at_unix"] - removed["at"] for loss in recovery.get("losses", [])
                     if loss.get("noticed_at_unix") is not None]
            noticed = min((a for a in after if a >= 0), default=None)
        return {"scenario": scenario, "job_s": result.elapsed_s, "submit_to_result_s": finished - submitted,
                "removed": removed, "noticed_after_s": noticed, "recovery": recovery,
                "max_map_attempt": max(a for t, a in result.attempts.items() if t.startswith("map")),
                "task_workers": result.details.get("task_workers"), "timeline": result.details.get("timeline"), "events": result.details.get("events", [])[-30:],
                "output": result.output}
    finally:
        engine.shutdown()
        cluster.shutdown()


def _remove_when(cluster, handle, nodes: list, trigger: tuple, removed: dict) -> None:
    phase, fraction, graceful = trigger
    while not handle.done():
        status = handle.status()
        maps = status.get("maps") or {}
        total = sum(maps.values())
        if (phase == "maps" and total and maps.get("completed", 0) >= fraction * total) or \
                (phase == "reduce" and status.get("phase") == "reduce"):
            node, where = _victim(handle, nodes)
            removed.update(at=time.time(), maps_completed=maps.get("completed", 0), maps=total,
                           phase=status.get("phase"), graceful=graceful, node=node.node_id, workers=where)
            cluster.remove_node(node, allow_graceful=graceful)
            return
        time.sleep(0.05)


def _child(scenario: str, corpus: Path, output: Path, split_size: str, reducers: int) -> dict:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "bench.faults_multinode", "--one", scenario, "--corpus", str(corpus),
                           "--output", str(output), "--split-size", split_size, "--reducers", str(reducers)],
                          cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{scenario}: child failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def _output_table(output: str):
    import pyarrow.parquet as pq

    table = pq.read_table(output, columns=["word", "count"])
    return table.sort_by("word")


def run(args: argparse.Namespace) -> list[dict]:
    """All scenarios, ``args.repeat`` times each, alternating; one row per scenario."""
    data = Path(getattr(args, "data", None) or Path(os.environ.get("TMPDIR", "/tmp")) / "engine-bench")
    quick = getattr(args, "quick", False)
    size = "8MiB" if quick else getattr(args, "multinode_size", None) or "256MiB"
    corpus = _corpus(size, data)
    split_size, reducers = "1MiB" if quick else getattr(args, "multinode_split_size", "8MiB"), 6
    runs: dict[str, list[dict]] = {name: [] for name in SCENARIOS}
    reference = None  # the first undisturbed run's output
    for repeat in range(max(1, int(getattr(args, "repeat", 1)))):
        for scenario in SCENARIOS:
            row = _child(scenario, corpus, data / "out-multinode", split_size, reducers)
            table = _output_table(row["output"])
            reference = table if reference is None else reference
            row["same_output"] = table.equals(reference)
            runs[scenario].append(row)
            print(f"[{repeat}] multinode {scenario:38s} job {row['job_s']:6.2f}s  noticed after "
                  f"{row['noticed_after_s'] if row['noticed_after_s'] is None else round(row['noticed_after_s'], 2)}s"
                  f"  re-run {row['recovery'].get('tasks_rerun', 0)}", flush=True)
    base_rows = runs["undisturbed"]
    base = statistics.median(r["job_s"] for r in base_rows)
    rows = []
    for scenario, values in runs.items():
        seconds = statistics.median(r["job_s"] for r in values)
        noticed = [r["noticed_after_s"] for r in values if r["noticed_after_s"] is not None]
        hit = "" if SCENARIOS[scenario] is None else (
            f"; the removal cost the job a worker in {len(noticed)} of {len(values)} runs (a small job may end first)")
        rows.append({"pattern": "multinode", "scenario": scenario, "seconds": seconds,
                     "ratio_to_undisturbed": seconds / base, "baseline": "undisturbed",
                     "exact": all(r["same_output"] for r in values),
                     "noticed_after_s": statistics.median(noticed) if noticed else None,
                     "runs": values,
                     "notes": f"{size} corpus, {split_size} splits, {reducers} reducers; 3-node simulated cluster "
                              "(head 0 CPU + 2 x 1 CPU); exact = the output table equals the first undisturbed run's" + hit})
    rows.append(_cli_row(data, "8MiB" if quick else "32MiB"))
    return rows


def _cli_row(data: Path, size: str) -> dict:
    """The CLI on a cluster it joins: process time beyond the job (bench/cli_linger.py)."""
    from bench.cli_linger import measure

    runs = measure(_corpus(size, data), data / "out-cli-linger")
    warm = [r for r in runs if r["run"] == "warm"]
    beyond = statistics.median(r["beyond_job_s"] for r in warm)
    return {"pattern": "multinode", "scenario": "CLI on a joined cluster: process time beyond the job (warm)",
            "seconds": beyond, "ratio_to_undisturbed": None, "baseline": None, "exact": True, "runs": runs,
            "notes": f"{size} corpus on a 1-node 2-CPU cluster; target: process <= job + 2 s; "
                     f"cold run beyond its job: {runs[0]['beyond_job_s']:.2f}s; after the last output (median, warm): "
                     f"{statistics.median(r['after_last_output_s'] for r in warm):.2f}s"}


def main(argv: list[str]) -> int:
    """Standalone run (see the module docstring); ``--one`` is the child mode."""
    parser = argparse.ArgumentParser(prog="python -m bench.faults_multinode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one", choices=list(SCENARIOS), help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--reducers", type=int, default=6, help=argparse.SUPPRESS)
    parser.add_argument("--split-size", dest="multinode_split_size", default="8MiB",
                        help="bytes per map task (default 8MiB)")
    parser.add_argument("--size", dest="multinode_size", default="256MiB", help="corpus size (default 256MiB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each scenario (median; default 3)")
    parser.add_argument("--quick", action="store_true", help="a 32MiB corpus (a smoke run, not for figures)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="directory for faults_multinode.json")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.one, args.corpus, args.output, args.multinode_split_size, args.reducers)))
        return 0
    load_before = os.getloadavg()
    rows = run(args)
    report = {"suite": "faults-multinode", "rows": rows, "loadavg_before": load_before,
              "loadavg_after": os.getloadavg(), "cores": os.cpu_count(),
              "targets": {"node lost mid-job": "<= 1.5x undisturbed, noticed within 5 s"}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults_multinode.json").write_text(json.dumps(report, indent=2))
    for row in rows:
        ratio = "" if row["ratio_to_undisturbed"] is None else f"{row['ratio_to_undisturbed']:5.2f}x"
        print(f"{row['scenario']:40s} {row['seconds']:7.2f}s  {ratio}  noticed after {row.get('noticed_after_s')}  "
              f"exact {row['exact']}  {row['notes'] if row['ratio_to_undisturbed'] is None else ''}")
    return 0 if all(row["exact"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
