"""How long the word-count CLI process lives beyond its job on a cluster it joins.

Starts a one-node cluster (``ray.cluster_utils.Cluster``, 2 CPUs: what ``ray start --head``
gives) and runs ``python -m jobs.wordcount CORPUS --address ADDR`` on it ``runs`` times: the
first on the fresh cluster (it starts the engine's pool), the others warm.  For each run:
the whole process time, the job time the CLI reports (from submission to commit), their
difference, and how long the process lived after its last line of output.  Part of
``python -m bench faults --patterns multinode``; alone: ``python -m bench.cli_linger``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(corpus: Path, output: Path, runs: int = 4) -> list[dict]:
    """One row per CLI run (see the module docstring)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.wait_for_nodes()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    rows = []
    try:
        for number in range(runs):
            started = time.monotonic()
            process = subprocess.Popen([sys.executable, "-m", "jobs.wordcount", str(corpus), "--address",
                                        cluster.address, "--overwrite", "--output", str(output), "--no-progress"],
                                       cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            last_output, job_s = started, None
            for line in process.stdout:
                last_output = time.monotonic()
                found = re.search(r"job time: ([0-9.]+)s", line)
                if found:
                    job_s = float(found.group(1))
            errors = process.stderr.read()
            code = process.wait()
            ended = time.monotonic()
            if code != 0 or job_s is None:
                raise RuntimeError(f"the CLI failed (exit {code}): {errors.strip()[-500:]}")
            rows.append({"run": "cold (starts the pool)" if number == 0 else "warm", "process_s": ended - started,
                         "job_s": job_s, "beyond_job_s": ended - started - job_s,
                         "after_last_output_s": ended - last_output})
    finally:
        cluster.shutdown()
    return rows


def main(argv: list[str]) -> int:
    """``python -m bench.cli_linger [CORPUS]`` (default: the 32 MiB bench corpus)."""
    from bench.faults_multinode import _corpus

    data = Path(os.environ.get("TMPDIR", "/tmp")) / "engine-bench"
    corpus = Path(argv[0]) if argv else _corpus("32MiB", data)
    for row in measure(corpus, data / "out-cli-linger"):
        print(f"{row['run']:24s} process {row['process_s']:5.2f}s  job {row['job_s']:5.2f}s  "
              f"beyond the job {row['beyond_job_s']:4.2f}s  after its last output {row['after_last_output_s']:4.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
