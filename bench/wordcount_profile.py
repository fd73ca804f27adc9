"""``--profile``: one engine word count under ``py-spy record --subprocesses``, summarized.

Writes where the CPU time goes (per process, and inside the workers' task methods) to
``bench/results/wordcount.profile.txt``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.wordcount_measure import REPO, ensure_corpus, subprocess_environment


def profile_engine(size: str, args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """One engine run on ``size`` under ``py-spy record --subprocesses``; write a summary to ``path``."""
    corpus = ensure_corpus(args.data_dir, size)
    raw = args.data_dir / f"profile-{size}.txt"
    out = args.data_dir / "out" / f"engine-profile-{size}"
    env = subprocess_environment()
    command = ["py-spy", "record", "--subprocesses", "--nonblocking", "--format", "raw", "--rate", "50",
               "-o", str(raw), "--", sys.executable, "-m", "bench.wordcount", "--run-one", "engine", str(corpus), str(out)]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=args.timeout)
    summary = summarize_profile(raw)
    summary["wall_s"] = time.perf_counter() - started
    lines = [f"py-spy record --subprocesses --rate 50 of one engine word count on {size} "
             f"({summary['wall_s']:.1f}s wall under the profiler; {summary['samples']} active samples)", "",
             "samples per process (active threads only):"]
    lines += [f"  {n:7d}  {name}" for name, n in summary["processes"]]
    lines += ["", f"inside the workers' map/reduce task methods ({summary['task_samples']} samples), "
                  "inclusive by function (top 30):"]
    lines += [f"  {n:7d}  {100 * n / max(1, summary['task_samples']):5.1f}%  {name}" for name, n in summary["in_tasks"]]
    lines += ["", "all processes, inclusive samples by function (top 30):"]
    lines += [f"  {n:7d}  {100 * n / max(1, summary['samples']):5.1f}%  {name}" for name, n in summary["inclusive"]]
    lines += ["", "self samples by function (top 30):"]
    lines += [f"  {n:7d}  {100 * n / max(1, summary['samples']):5.1f}%  {name}" for name, n in summary["self"]]
    path.write_text("\n".join(lines) + "\n")
    return summary


def summarize_profile(raw: Path, top: int = 30) -> dict[str, Any]:
    """Samples per process, and inclusive/self samples per function, from py-spy's raw (collapsed) output."""
    processes: Counter = Counter()
    inclusive: Counter = Counter()
    own: Counter = Counter()
    in_tasks: Counter = Counter()  # only samples inside the worker's task methods: the job's work
    total = task_total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # With --subprocesses a stack starts with the chain of "process PID:"cmdline"" frames.
        depth = max(i for i, f in enumerate(frames) if f.startswith("process ")) + 1 if frames[0].startswith("process ") else 0
        total += count
        processes[_process_name(frames[depth - 1]) if depth else "?"] += count
        names = [_function_name(f) for f in frames[depth:]] or ["(no Python frame)"]
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count
        if any(n.startswith(("MapReduceWorker.run_map ", "MapReduceWorker.run_reduce ")) for n in names):
            task_total += count
            for name in set(names):
                in_tasks[name] += count
    return {"samples": total, "processes": processes.most_common(12), "inclusive": inclusive.most_common(top),
            "self": own.most_common(top), "task_samples": task_total, "in_tasks": in_tasks.most_common(top)}


def _process_name(frame: str) -> str:
    """``process 12:"python .../default_worker.py --x"`` -> ``default_worker.py pid 12``."""
    pid, _, command = frame[len("process "):].partition(":")
    words = command.strip('"').split()
    script = next((w for w in words[1:] if w.endswith(".py")), " ".join(words[1:4]) or words[0] if words else "?")
    return f"{script.rsplit('/', 1)[-1]} pid {pid}"


def _function_name(frame: str) -> str:
    """``func (path/file.py:123)`` -> ``func (file.py)``: aggregate a function over its lines."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1].rstrip(')')})"
