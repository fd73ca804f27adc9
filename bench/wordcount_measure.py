"""Measuring one benchmark process (wall time, peak summed RSS of its process tree, load) and
the cached corpora it runs on.

Each run is ``python -m bench.wordcount --run-one SYSTEM ...`` in its own session; the
parent samples the RSS of the process and all its descendants (driver, GCS, raylet, Ray
workers) every 0.2 s, kills the whole tree on a timeout, and waits for every process it
saw to exit before the next run starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH-RESULT "
SAMPLE_INTERVAL_S = 0.2


class TreeMemorySampler:
    """Samples the summed RSS of a process and all its descendants every ``interval_s``."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_rss = 0
        self.peak_private = 0  # summed RSS minus each process's shared pages (object store, libraries)
        self.peak_processes = 0
        self.peak_breakdown: dict[str, int] = {}  # process title -> summed RSS at the peak
        self.seen: dict[int, Any] = {}  # pid -> psutil.Process of every process of the tree
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "TreeMemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def wait_for_tree_exit(self, timeout_s: float = 30.0) -> float:
        """Wait until every process seen in the tree has exited (Ray's daemons outlive the driver
        by a moment); returns the seconds waited.  Keeps one run's teardown out of the next."""
        import psutil

        started = time.perf_counter()
        psutil.wait_procs(list(self.seen.values()), timeout=timeout_s)
        return time.perf_counter() - started

    def _loop(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                processes = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            total = private = 0
            breakdown: dict[str, int] = {}
            for process in processes:
                self.seen.setdefault(process.pid, process)
                try:
                    info = process.memory_info()
                    title = _title(process)
                except psutil.Error:
                    continue
                total += info.rss
                private += info.rss - getattr(info, "shared", 0)
                breakdown[title] = breakdown.get(title, 0) + info.rss
            if total > self.peak_rss:
                self.peak_rss, self.peak_processes, self.peak_breakdown = total, len(processes), breakdown
            self.peak_private = max(self.peak_private, private)
            self._stop.wait(self.interval_s)


def _title(process: Any) -> str:
    """A short name for a process of the tree: Ray's title (``ray::MapReduceWorker``) or the
    program's file name (``raylet``, ``gcs_server``, ``python``)."""
    words = process.cmdline() or [process.name()]
    first = words[0]
    if first.startswith("ray::"):
        return first.split(".")[0].split(" ")[0]
    return os.path.basename(first)


def subprocess_environment(address: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every timed process.

    Without ``address``, ``RAY_ADDRESS=local`` makes ``ray.init()`` start a fresh local
    cluster: otherwise Ray joins whatever cluster ``ray start`` last left in
    ``/tmp/ray/ray_current_cluster`` on this shared machine (and hangs if that one is gone).
    With ``address`` (``--address auto``), ``RAY_ADDRESS`` is that address.
    """
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "RAY_ADDRESS": address or "local", "RAY_DEDUP_LOGS": "1", "TQDM_DISABLE": "1", **(extra or {})}


def kill_tree(pid: int) -> None:
    """Kill a timed-out run: the process, its descendants (its Ray cluster) and its session."""
    import signal

    import psutil

    try:
        processes = [psutil.Process(pid)]
        processes += processes[0].children(recursive=True)
    except psutil.NoSuchProcess:
        processes = []
    for process in reversed(processes):
        try:
            process.kill()
        except psutil.Error:
            pass
    try:
        os.killpg(pid, signal.SIGKILL)  # the run has its own session, so this is only its processes
    except (ProcessLookupError, PermissionError):
        pass


def timed_process(args: list[str], log_path: Path, timeout_s: float, address: str | None = None,
                  extra_env: dict[str, str] | None = None, command: list[str] | None = None) -> dict[str, Any]:
    """Run ``python -m bench.wordcount --run-one ARGS`` (or ``command``, which need not print a
    result line) as a whole process; time it, its process tree's peak memory and the load
    average around it.  Raises RuntimeError when it fails."""
    env = subprocess_environment(address, extra_env)
    argv = command or [sys.executable, "-m", "bench.wordcount", "--run-one", *args]
    load_before = os.getloadavg()[0]
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=REPO,
                                   env=env, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        with TreeMemorySampler(process.pid) as sampler:
            try:
                stdout, _ = process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                kill_tree(process.pid)
                stdout, _ = process.communicate()
        elapsed = time.perf_counter() - started
    teardown_s = sampler.wait_for_tree_exit()
    reported = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            reported = json.loads(line[len(RESULT_PREFIX):])
    if process.returncode != 0 or (not reported and command is None):
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(args[:2])} failed (exit {process.returncode}); log {log_path}:\n{tail}")
    return {"wall_s": elapsed, "peak_rss_bytes": sampler.peak_rss, "peak_private_bytes": sampler.peak_private,
            "peak_processes": sampler.peak_processes,
            "peak_rss_by_process": sampler.peak_breakdown, "teardown_after_exit_s": teardown_s,
            "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0], "reported": reported,
            "stdout_tail": stdout[-4000:]}


# ----- corpora --------------------------------------------------------------------------------


def ensure_corpus(data_dir: Path, size_text: str) -> Path:
    """The cached corpus of ``size_text`` under ``data_dir`` (generated on first use)."""
    from datasets.text import TextCorpusSpec, parse_size, write_text_corpus

    spec = TextCorpusSpec(parse_size(size_text))
    directory = data_dir / f"corpus-{size_text}"
    if not all((directory / f"part-{i:05d}.txt").exists() for i in range(spec.file_count())):
        print(f"generating the {size_text} corpus in {directory} ...", file=sys.stderr)
        write_text_corpus(spec, directory)
    return directory


def ensure_one_line(data_dir: Path, corpus: Path) -> Path:
    """A one-line corpus (the first line of ``corpus``): what each system's start-up costs."""
    directory = data_dir / "corpus-one-line"
    directory.mkdir(parents=True, exist_ok=True)
    with open(corpus / "part-00000.txt", "rb") as handle:
        (directory / "part-00000.txt").write_bytes(handle.readline())
    return directory


def corpus_bytes(corpus: Path) -> int:
    """Total bytes of the corpus' text files."""
    return sum(p.stat().st_size for p in corpus.glob("*.txt"))
