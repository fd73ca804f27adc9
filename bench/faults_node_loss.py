"""Embedded node loss under a MapReduce word count (``bench faults``, pattern mapreduce).

The job runs in a driver subprocess with an embedded cluster of its own
(``python -m bench.faults_node_loss CORPUS OUT SPLIT_SIZE WORKERS DELAY_S``), as in
tests/fault/test_embedded_node_loss.py, so that killing that cluster's GCS server cannot
hurt anything else.  The driver warms its pool on one file, times the job (including the
restart of its cluster and the resume from snapshots) and prints ``RESULT {json}``.  The
parent runs it undisturbed and with the GCS server SIGKILLed once half of the maps are in
the job's snapshot store, and compares the output parts with the plain-Python oracle.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.faults_common import guarded, own_processes, scenario_row, sigkill_own, wait_until

ROOT = Path(__file__).resolve().parents[1]
UNDISTURBED = "embedded cluster: undisturbed (driver subprocess)"
KILLED = "embedded cluster: gcs_server SIGKILLed at 50% of maps"


def node_loss_job(corpus: str, output: str, split_size: int, workers: int) -> Any:
    """The word count both processes build (the parent needs its fingerprint)."""
    import engine
    from jobs.wordcount_job import wordcount_job

    options = engine.JobOptions(overwrite=True, workers=workers, heartbeat_interval_s=0.2, snapshot_every_tasks=1,
                                snapshot_every_s=0.5, speculation=False)
    return wordcount_job([corpus], output, reducers=2 * workers, split_size=split_size, options=options,
                         name="faults-node-loss")


def main(argv: list[str]) -> int:
    """The driver: warm up, run the job to the end whatever happens to the cluster, print the result."""
    import engine
    from engine.runtime.node_watch import NodeWatchOptions
    from engine.testing import ChaosPlan, WorkerChaos

    from bench.faults_node_loss import node_loss_job as by_name  # not __main__'s copy: the same fingerprint

    corpus, output, split_size, workers, delay_s = argv[0], argv[1], int(argv[2]), int(argv[3]), float(argv[4])
    engine.connect(num_cpus=workers, node_watch=NodeWatchOptions(check_every_s=0.2, unreachable_after_s=2.0))
    try:
        first = str(sorted(Path(corpus).glob("*.txt"))[0])
        engine.run(by_name(first, output + "-warm", split_size, workers)).result(timeout_s=600)
        plan = ChaosPlan(workers={n: WorkerChaos(delay_s=delay_s) for n in range(workers + 4)}) if delay_s else None
        started = time.perf_counter()
        result = engine.run(by_name(corpus, output, split_size, workers), chaos=plan).result(timeout_s=600)
        seconds = time.perf_counter() - started
        print("RESULT " + json.dumps({"seconds": seconds, "restarts": result.details.get("cluster_restarts", 0),
                                      "events": [e for e in result.details.get("events", []) if "cluster" in e][:5]}),
              flush=True)
    finally:
        engine.shutdown()
    return 0


def _completed_maps(snapshots: Path, fingerprint: str) -> int:
    from engine.mapreduce.snapshot import SnapshotStore

    if not snapshots.is_dir():
        return 0
    snapshot = SnapshotStore(str(snapshots), "faults-node-loss", fingerprint).latest()
    if snapshot is None:
        return 0
    return sum(1 for t in snapshot.state["tasks"] if t["kind"] == "map" and t["state"] == "completed")


def _drive(corpus: Path, output: Path, split_size: int, workers: int, delay_s: float, kill_at: int | None) -> dict:
    """One driver subprocess; with ``kill_at``, SIGKILL its GCS server once that many maps are done."""
    fingerprint = node_loss_job(str(corpus), str(output), split_size, workers).fingerprint()
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # its own cluster
    env["PYTHONPATH"] = str(ROOT)
    driver = subprocess.Popen([sys.executable, "-m", "bench.faults_node_loss", str(corpus), str(output),
                               str(split_size), str(workers), str(delay_s)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    note, left = "", []
    try:
        if kill_at is not None:
            wait_until(lambda: driver.poll() is not None or _completed_maps(output / "_snapshots", fingerprint) >= kill_at,
                       timeout_s=600)
            left = own_processes(driver.pid)
            gcs = [p for p in left if p.name() == "gcs_server"]
            if driver.poll() is None and len(gcs) == 1:
                note = f"gcs_server pid {sigkill_own(gcs[0].pid, driver.pid)} SIGKILLed"
            else:
                note = f"not killed: driver ended or {len(gcs)} gcs_server processes"
        stdout, stderr = driver.communicate(timeout=900)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
        for process in left:  # what the lost cluster left behind: ours, by pid
            if process.is_running():
                process.kill()
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if driver.returncode != 0 or not lines:
        raise RuntimeError(f"node-loss driver exited {driver.returncode}: {stderr.strip().splitlines()[-1:]}")
    return {**json.loads(lines[-1][len("RESULT "):]), "kill": note,
            "resumed_line": next((l for l in stderr.splitlines() if "restarted it and" in l), "")}


def _output_counts(directory: Path) -> dict[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.faults_mapreduce import counts_of

    return counts_of(pa.concat_tables([pq.read_table(part) for part in sorted(directory.glob("part-*.parquet"))]))


def run(args: argparse.Namespace, corpus: Path, expected: dict[str, int], delay_s: float) -> list[dict]:
    """The undisturbed and the GCS-killed driver runs, ``args.repeat`` times each; two rows."""
    from datasets.text import parse_size
    from engine.io.sources import TextSource

    split_size = parse_size(args.split_size)
    maps = len(TextSource([str(corpus)], split_size=split_size).plan_splits())
    runs: dict[str, list[dict]] = {UNDISTURBED: [], KILLED: []}
    for repeat in range(args.repeat):
        for name, kill_at in ((UNDISTURBED, None), (KILLED, max(1, maps // 2))):
            runs[name].append(guarded(name, repeat, lambda: _checked(corpus, args, split_size, delay_s, kill_at,
                                                                     expected)))
    base = scenario_row("mapreduce", UNDISTURBED, runs[UNDISTURBED], None, None)["seconds"]
    killed = {"kill": "", "restarts": None, "resumed_line": "", **runs[KILLED][-1]}
    return [scenario_row("mapreduce", UNDISTURBED, runs[UNDISTURBED], None, None,
                         "the job of the driver subprocess (its own embedded cluster), after a warm-up job"),
            scenario_row("mapreduce", KILLED, runs[KILLED], UNDISTURBED, base,
                         f"raised {killed['error']}" if "error" in killed else
                         f"{killed['kill']}; restarts {killed['restarts']}; {killed['resumed_line']}")]


def _checked(corpus: Path, args: argparse.Namespace, split_size: int, delay_s: float, kill_at: int | None,
             expected: dict[str, int]) -> dict:
    """One driver run; exact = committed output equal to the oracle (and, when killed, one restart)."""
    output = args.data / "out-node-loss"
    run = _drive(corpus, output, split_size, args.workers, delay_s, kill_at)
    run["exact"] = (output / "_SUCCESS").exists() and _output_counts(output) == expected
    if kill_at is not None:
        run["exact"] = run["exact"] and run["restarts"] == 1
    return run


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
