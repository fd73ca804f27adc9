"""Word-count throughput: the engine vs Ray Data vs Polars, on the same corpus, same run.

``python -m bench wordcount --size 256MiB`` generates (once, cached) a deterministic Zipf
corpus with ``datasets.text`` and runs three word counts on it, each as a whole Python
process, alternating systems and repeating each (default 3 times):

- ``engine``:  ``engine.submit(wordcount_job(...))`` on an embedded 2-CPU Ray cluster;
- ``raydata``: ``read_text -> map_batches(utf8_split_whitespace) -> groupby("word").count()
  -> write_parquet``, the idiomatic Ray Data word count, defaults untouched;
- ``polars``:  ``scan_csv`` of whole lines -> ``str.split(" ")`` -> ``explode`` ->
  ``group_by().len()`` -> ``sink_parquet``.

Each system is also timed on a one-line input (its start-up: interpreter, imports, Ray
cluster, ...).  Throughput = bytes / (median time on the corpus - median time on one line).
While a process runs, a thread samples the summed RSS of its whole process tree (driver,
GCS, raylet, workers) every 0.2 s; the peak is reported per run.  A separate process
measures the engine's small-job latency with the cluster already up, and checks the
engine against a plain ``collections.Counter(text.split())`` oracle.  After every run the
three outputs are compared (see ``compare_outputs`` for exactly what is compared).

Writes ``bench/results/wordcount.json`` and ``bench/results/wordcount.png``; with
``--profile``, also one engine run of the largest corpus under ``py-spy record
--subprocesses`` (driver, master and worker actors), summarized as where the CPU time goes
in ``bench/results/wordcount.profile.txt``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
SYSTEMS = ("engine", "raydata", "polars")
RESULT_PREFIX = "BENCH-RESULT "
DEFAULT_DATA_DIR = Path("/tmp/bench-wordcount")
SAMPLE_INTERVAL_S = 0.2
TOP_K = 10


# ----- runners: each executes inside its own timed subprocess --------------------------------


def run_engine(corpus: str, out: str) -> dict[str, Any]:
    """The engine's word count over ``corpus`` into the Parquet dataset ``out``."""
    import engine
    from jobs.wordcount_job import wordcount_job

    started = time.perf_counter()
    engine.connect()
    connected = time.perf_counter()
    job = wordcount_job([corpus], out, options=engine.JobOptions(overwrite=True, progress=False))
    result = engine.submit(job).result()
    done = time.perf_counter()
    engine.shutdown()
    return {"connect_s": connected - started, "job_s": done - connected, "engine_job_s": result.elapsed_s,
            "map_input_bytes": int(result.counters.get("map_input_bytes", 0))}


def run_raydata(corpus: str, out: str) -> dict[str, Any]:
    """Ray Data's idiomatic word count (defaults untouched) into the Parquet dataset ``out``."""
    import logging

    import pyarrow as pa
    import pyarrow.compute as pc
    import ray
    import ray.data

    def split_words(batch: pa.Table) -> pa.Table:
        return pa.table({"word": pc.list_flatten(pc.utf8_split_whitespace(batch["text"]))})

    started = time.perf_counter()
    ray.init(include_dashboard=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    connected = time.perf_counter()
    (ray.data.read_text(corpus)
     .map_batches(split_words, batch_format="pyarrow")
     .groupby("word").count()
     .write_parquet(out))
    done = time.perf_counter()
    ray.shutdown()
    return {"connect_s": connected - started, "job_s": done - connected}


def run_polars(corpus: str, out: str) -> dict[str, Any]:
    """Polars' word count: lines via ``scan_csv``, ``str.split(" ")``, ``explode``, ``group_by().len()``."""
    import polars as pl

    started = time.perf_counter()
    # Each line is one field: a separator byte and no quote character that the text never holds.
    lines = pl.scan_csv(os.path.join(corpus, "*.txt"), has_header=False, separator="\x1f", quote_char=None,
                        schema={"line": pl.String})
    (lines.select(pl.col("line").str.split(" ").alias("word"))
     .explode("word")
     .filter(pl.col("word") != "")
     .group_by("word").len(name="count")
     .sink_parquet(os.path.join(out, "part-0.parquet"), mkdir=True))
    return {"connect_s": 0.0, "job_s": time.perf_counter() - started}


def run_engine_latency(small_corpus: str, sample_file: str, out: str, repeat: int) -> dict[str, Any]:
    """Small-job latency with the cluster up, and the engine vs ``Counter(text.split())``.

    After one warm-up job, the word count over ``small_corpus`` is submitted ``repeat``
    times back to back, then ``repeat`` times each after a 2 s pause (a user at a prompt);
    each is timed from ``submit`` to ``result()``, split into ``submit`` and the wait.
    Then the engine's counts of ``small_corpus`` and of ``sample_file`` are compared
    exactly with a plain-Python oracle.
    """
    import engine
    from jobs.wordcount_job import wordcount_job

    started = time.perf_counter()
    engine.connect()
    connect_s = time.perf_counter() - started
    job = wordcount_job([small_corpus], out, options=engine.JobOptions(overwrite=True, progress=False))
    warm = time.perf_counter()
    engine.submit(job).result()
    warmup_s = time.perf_counter() - warm
    timings: dict[str, list[dict[str, float]]] = {"back_to_back": [], "after_2s_pause": []}
    for mode, pause_s in (("back_to_back", 0.0), ("after_2s_pause", 2.0)):
        for _ in range(repeat):
            time.sleep(pause_s)
            begin = time.perf_counter()
            handle = engine.submit(job)
            submitted = time.perf_counter()
            result = handle.result()
            end = time.perf_counter()
            timings[mode].append({"latency_s": end - begin, "submit_s": submitted - begin,
                                  "master_job_s": result.elapsed_s})
    oracle = {"small_corpus": _matches_oracle(result.table(), [Path(small_corpus)])}
    sample_job = wordcount_job([sample_file], out + "-sample", options=engine.JobOptions(overwrite=True, progress=False))
    oracle["sample_file"] = _matches_oracle(engine.submit(sample_job).result().table(), [Path(sample_file)])
    engine.shutdown()
    medians = {mode: statistics.median(t["latency_s"] for t in runs) for mode, runs in timings.items()}
    return {"connect_s": connect_s, "first_job_s": warmup_s, "timings": timings,
            "median_latency_s": medians["back_to_back"], "median_latency_after_pause_s": medians["after_2s_pause"],
            "oracle": oracle}


def _matches_oracle(table: Any, files: list[Path]) -> dict[str, Any]:
    """Whether ``table`` (word, count) equals ``Counter(text.split())`` over ``files`` exactly."""
    expected: Counter = Counter()
    for path in sorted(p for f in files for p in ([f] if f.is_file() else f.glob("*.txt"))):
        expected.update(path.read_text(encoding="utf-8").split())
    got = dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist()))
    return {"files": [str(f) for f in files], "identical": got == dict(expected),
            "words": sum(expected.values()), "distinct": len(expected)}


RUNNERS: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "engine": run_engine, "raydata": run_raydata, "polars": run_polars}


def run_one(argv: list[str]) -> int:
    """``--run-one SYSTEM CORPUS OUT`` (or ``engine-latency SMALL SAMPLE OUT REPEAT``): print a result line."""
    system = argv[0]
    if system == "engine-latency":
        result = run_engine_latency(argv[1], argv[2], argv[3], int(argv[4]))
    else:
        result = RUNNERS[system](argv[1], argv[2])
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# ----- measuring a process ---------------------------------------------------------------------


class TreeMemorySampler:
    """Samples the summed RSS of a process and all its descendants every ``interval_s``."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_rss = 0
        self.peak_private = 0  # summed RSS minus each process's shared pages (object store, libraries)
        self.peak_processes = 0
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
            for process in processes:
                self.seen.setdefault(process.pid, process)
                try:
                    info = process.memory_info()
                except psutil.Error:
                    continue
                total += info.rss
                private += info.rss - getattr(info, "shared", 0)
            if total > self.peak_rss:
                self.peak_rss, self.peak_processes = total, len(processes)
            self.peak_private = max(self.peak_private, private)
            self._stop.wait(self.interval_s)


def subprocess_environment() -> dict[str, str]:
    """The environment of every timed process.

    ``RAY_ADDRESS=local`` makes ``ray.init()`` start a fresh local cluster: without it,
    Ray joins whatever cluster ``ray start`` last left in ``/tmp/ray/ray_current_cluster``
    on this shared machine (and hangs if that one is gone).
    """
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "RAY_ADDRESS": "local", "RAY_DEDUP_LOGS": "1", "TQDM_DISABLE": "1"}


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


def timed_process(args: list[str], log_path: Path, timeout_s: float) -> dict[str, Any]:
    """Run ``python -m bench.wordcount --run-one ARGS`` as a whole process; time it and its memory."""
    env = subprocess_environment()
    load_before = os.getloadavg()[0]
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "bench.wordcount", "--run-one", *args], cwd=REPO,
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
    if process.returncode != 0 or not reported:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(args[:2])} failed (exit {process.returncode}); log {log_path}:\n{tail}")
    return {"wall_s": elapsed, "peak_rss_bytes": sampler.peak_rss, "peak_private_bytes": sampler.peak_private,
            "peak_processes": sampler.peak_processes, "teardown_after_exit_s": teardown_s,
            "load_1min_before": load_before, "load_1min_after": os.getloadavg()[0], "reported": reported}


# ----- corpora and agreement -----------------------------------------------------------------


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


def read_counts(system: str, out: Path) -> Any:
    """A system's output as ``(word: large_string, count: int64)``, normalized to ``str.split()`` words.

    The engine's and Ray Data's words already are whitespace-separated tokens.  Polars
    splits on single spaces only, so its "words" may hold tabs or a CR, and double spaces
    give empty strings (dropped in its query); re-splitting each of its tokens on any
    whitespace and summing the counts again gives exactly the ``str.split()`` counts.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(p for p in out.rglob("*.parquet") if not p.name.startswith(("_", ".")))
    table = pa.concat_tables([pq.read_table(p) for p in files]) if files else pa.table({"word": [], "count": []})
    count_column = "count()" if "count()" in table.column_names else "count"
    words = table.column("word").cast(pa.large_string())
    counts = table.column(count_column).cast(pa.int64())
    if system == "polars":
        pieces = pc.utf8_split_whitespace(words.combine_chunks())
        counts = counts.combine_chunks().take(pc.list_parent_indices(pieces))
        words = pc.list_flatten(pieces)
    table = pa.table({"word": words, "count": counts}).group_by("word").aggregate([("count", "sum")])
    table = table.rename_columns(["word", "count"])
    return table.sort_by("word")


def compare_outputs(outputs: dict[str, Path]) -> dict[str, Any]:
    """Compare every system's normalized (word, count) table with the engine's, exactly.

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


# ----- the benchmark ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m bench wordcount``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench wordcount",
        description="Word-count throughput of the engine, Ray Data (read_text -> map_batches -> groupby().count()) "
                    "and Polars (scan_csv -> str.split -> explode -> group_by().len()) on the same generated corpus, "
                    "each run as a whole process, alternating, repeated; start-up (the time on a one-line input) "
                    "is subtracted and reported separately.  Writes bench/results/wordcount.json and .png.",
        epilog="Examples:\n  python -m bench wordcount --size 256MiB\n"
               "  python -m bench wordcount --size 1MiB,256MiB,1GiB --repeat 3\n"
               "  python -m bench wordcount --size 64MiB --systems engine,polars --repeat 1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", default=None,
                        help="corpus size(s): repeatable or comma-separated, e.g. 1MiB,256MiB,1GiB (default 256MiB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per system and size; medians are reported (default 3)")
    parser.add_argument("--startup-repeat", type=int, default=2,
                        help="one-line (start-up) runs per system per repetition (default 2: start-up is the "
                             "noisiest part of a whole-process time)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for wordcount.json/.png (default bench/results)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help=f"where corpora are cached and outputs written (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--latency-repeat", type=int, default=5,
                        help="timed small-job submits with the cluster up (default 5; 0 skips the latency measurement)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile one engine run on the largest size with py-spy (wordcount.profile.txt)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds one process may take before it is killed (default 900)")
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
    for package in ("ray", "pyarrow", "polars", "numpy", "psutil"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "missing"
    return found


def machine() -> dict[str, Any]:
    """Cores, memory and platform of this machine."""
    import psutil

    return {"cores": os.cpu_count(), "memory_bytes": psutil.virtual_memory().total, "platform": platform.platform()}


def mb_per_s(nbytes: int, seconds: float | None) -> float | None:
    """Megabytes (10**6 bytes) per second, or None when ``seconds`` is not positive."""
    return nbytes / 1e6 / seconds if seconds and seconds > 0 else None


def summarize_system(nbytes: int, corpus_runs: list[dict], startup_runs: list[dict]) -> dict[str, Any]:
    """Medians, start-up, net time and throughput of one system on one corpus (None if it never ran)."""
    if not corpus_runs or not startup_runs:
        return {"runs_s": [], "median_s": None, "startup_s": None, "net_s": None, "mb_s": None,
                "in_process_job_median_s": None, "mb_s_in_process": None, "peak_rss_max_bytes": None}
    median_s = statistics.median(r["wall_s"] for r in corpus_runs)
    startup_s = statistics.median(r["wall_s"] for r in startup_runs)
    net_s = median_s - startup_s
    return {
        "runs_s": [round(r["wall_s"], 3) for r in corpus_runs],
        "startup_runs_s": [round(r["wall_s"], 3) for r in startup_runs],
        # Where start-up goes, inside the one-line process: connecting (cluster start) and the job.
        "startup_connect_s": statistics.median(r["reported"].get("connect_s", 0.0) for r in startup_runs),
        "startup_job_s": statistics.median(r["reported"].get("job_s", 0.0) for r in startup_runs),
        "median_s": median_s, "startup_s": startup_s, "net_s": net_s, "mb_s": mb_per_s(nbytes, net_s),
        "mb_s_including_startup": mb_per_s(nbytes, median_s),
        "in_process_job_s": [r["reported"].get("job_s") for r in corpus_runs],
        # Cross-check, not the headline: time from "cluster up" to "output written" inside the
        # process (includes the first job's warm-up; Polars has no cluster, so its whole query).
        "in_process_job_median_s": statistics.median(r["reported"].get("job_s", 0.0) for r in corpus_runs),
        "mb_s_in_process": mb_per_s(nbytes, statistics.median(r["reported"].get("job_s", 0.0) for r in corpus_runs)),
        "peak_rss_bytes": [r["peak_rss_bytes"] for r in corpus_runs],
        "peak_rss_max_bytes": max(r["peak_rss_bytes"] for r in corpus_runs),
        "peak_private_max_bytes": max(r["peak_private_bytes"] for r in corpus_runs),
        "peak_processes": max(r["peak_processes"] for r in corpus_runs),
        "load_1min": [[round(r["load_1min_before"], 2), round(r["load_1min_after"], 2)] for r in corpus_runs],
    }


def bench_all(sizes: list[str], systems: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Every run: per repetition, each size with the systems alternating, then each system on one line.

    Start-up (the one-line time) does not depend on the corpus, so it is measured once per
    repetition and its median is subtracted from every size's median.
    """
    corpora = {size: ensure_corpus(args.data_dir, size) for size in sizes}
    one_line = ensure_one_line(args.data_dir, corpora[sizes[0]])
    logs = args.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    corpus_runs = {size: {s: [] for s in systems} for size in sizes}
    startup_runs: dict[str, list[dict]] = {s: [] for s in systems}
    agreement: dict[str, list[dict]] = {size: [] for size in sizes}
    failures: list[dict] = []
    for repetition in range(args.repeat):
        for size in sizes:
            outputs: dict[str, Path] = {}
            for system in systems:
                out = args.data_dir / "out" / f"{system}-{size}"
                shutil.rmtree(out, ignore_errors=True)
                try:
                    run = timed_process([system, str(corpora[size]), str(out)],
                                        logs / f"{system}-{size}-{repetition}.log", args.timeout)
                except RuntimeError as error:  # keep the other systems' figures; report the failure
                    failures.append({"size": size, "system": system, "repetition": repetition, "error": str(error)[:2000]})
                    print(f"  {size:>8} #{repetition} {system:8s} FAILED: {str(error).splitlines()[0]}", file=sys.stderr)
                    continue
                corpus_runs[size][system].append(run)
                outputs[system] = out
                print(f"  {size:>8} #{repetition} {system:8s} {run['wall_s']:8.2f}s  peak RSS "
                      f"{run['peak_rss_bytes'] / 2**20:7.0f} MiB  load {run['load_1min_before']:.1f}", file=sys.stderr)
            agreement[size].append(compare_outputs(outputs))
        for round_ in range(args.startup_repeat):
            for system in systems:
                out = args.data_dir / "out" / f"{system}-one-line"
                shutil.rmtree(out, ignore_errors=True)
                try:
                    run = timed_process([system, str(one_line), str(out)],
                                        logs / f"{system}-one-line-{repetition}-{round_}.log", args.timeout)
                except RuntimeError as error:
                    failures.append({"size": "one-line", "system": system, "repetition": repetition,
                                     "error": str(error)[:2000]})
                    print(f"  one line #{repetition}.{round_} {system:8s} FAILED", file=sys.stderr)
                    continue
                startup_runs[system].append(run)
                print(f"  one line #{repetition}.{round_} {system:8s} {run['wall_s']:8.2f}s", file=sys.stderr)
    report = {}
    for size in sizes:
        nbytes = corpus_bytes(corpora[size])
        results = {s: summarize_system(nbytes, corpus_runs[size][s], startup_runs[s]) for s in systems}
        ratios = {}
        if "engine" in results:
            for peer in systems:
                if peer != "engine" and results["engine"]["mb_s"] and results[peer]["mb_s"]:
                    ratios[f"engine_vs_{peer}"] = results["engine"]["mb_s"] / results[peer]["mb_s"]
        report[size] = {"bytes": nbytes, "files": len(list(corpora[size].glob("*.txt"))), "corpus": str(corpora[size]),
                        "systems": results, "ratios": ratios, "agreement": agreement[size][-1],
                        "all_repetitions_agree": all(a["all_agree"] for a in agreement[size]),
                        "failures": [f for f in failures if f["size"] in (size, "one-line")]}
    return report


def bench_latency(sizes: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The engine's 1 MiB job latency with the cluster up, plus the exact oracle checks."""
    small = ensure_corpus(args.data_dir, "1MiB")
    largest = ensure_corpus(args.data_dir, sizes[-1])
    out = args.data_dir / "out" / "engine-latency"
    run = timed_process(["engine-latency", str(small), str(largest / "part-00000.txt"), str(out),
                         str(args.latency_repeat)], args.data_dir / "logs" / "engine-latency.log", args.timeout)
    return {**run["reported"], "peak_rss_bytes": run["peak_rss_bytes"], "process_wall_s": run["wall_s"]}


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


def add_in_process_figures(report: dict[str, Any]) -> None:
    """Add the in-process cross-check to every size/system: net = job time on the corpus - job
    time on one line, both measured inside the process once its cluster is up.

    Whole-process times carry the cluster's start-up and teardown, which vary by seconds on
    a shared machine; the in-process difference does not, so it shows whether the headline
    figure is noise.  The headline stays the issue's definition (whole processes).
    """
    for entry in report["sizes"].values():
        for figures in entry["systems"].values():
            job_s, startup_job_s = figures.get("in_process_job_median_s"), figures.get("startup_job_s")
            net = None if job_s is None or startup_job_s is None else job_s - startup_job_s
            figures["net_in_process_s"] = net
            figures["mb_s_net_in_process"] = mb_per_s(entry["bytes"], net)
        engine_rate = entry["systems"].get("engine", {}).get("mb_s_net_in_process")
        entry["ratios_in_process"] = {
            f"engine_vs_{peer}": engine_rate / figures["mb_s_net_in_process"]
            for peer, figures in entry["systems"].items()
            if peer != "engine" and engine_rate and figures.get("mb_s_net_in_process")}


def check_targets(report: dict[str, Any], rate_key: str = "mb_s", ratios_key: str = "ratios") -> dict[str, Any]:
    """The issue's targets, each with the measured figure and whether it is met (None: not measured)."""
    sizes = report["sizes"]

    def engine(size: str, key: str) -> Any:
        return sizes.get(size, {}).get("systems", {}).get("engine", {}).get(key)

    ratio = sizes.get("256MiB", {}).get(ratios_key, {}).get("engine_vs_raydata")
    at_1g, at_256m = engine("1GiB", rate_key), engine("256MiB", rate_key)
    peak_1g = engine("1GiB", "peak_rss_max_bytes")
    small = report.get("engine_small_job", {})
    latency = max(small["median_latency_s"], small["median_latency_after_pause_s"]) if small else None
    return {
        "256MiB_engine_vs_raydata_at_least_10x": {"measured": ratio, "met": None if ratio is None else ratio >= 10},
        "1GiB_engine_at_least_200MB_s": {"measured": at_1g, "met": None if at_1g is None else at_1g >= 200},
        "1GiB_within_15pct_of_256MiB": {
            "measured": None if not (at_1g and at_256m) else at_1g / at_256m,
            "met": None if not (at_1g and at_256m) else at_1g >= 0.85 * at_256m},
        "1MiB_job_well_under_1s_with_cluster_up": {"measured": latency, "met": None if latency is None else latency < 0.5},
        "1GiB_peak_cluster_rss_under_4GiB": {"measured": peak_1g, "met": None if peak_1g is None else peak_1g < 4 * 2**30},
    }


def plot(report: dict[str, Any], path: Path) -> None:
    """MB/s (start-up excluded) per system per corpus size, and each system's start-up time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(report["sizes"])
    systems = report["options"]["systems"]
    width = 0.8 / max(1, len(systems))
    figure, (rates, startups) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    for index, system in enumerate(systems):
        values = [report["sizes"][s]["systems"][system]["mb_s"] or 0.0 for s in sizes]
        positions = [i + (index - (len(systems) - 1) / 2) * width for i in range(len(sizes))]
        bars = rates.bar(positions, values, width, label=system)
        for bar, value in zip(bars, values):
            if value > 0:
                rates.annotate(f"{value:,.0f}" if value >= 10 else f"{value:.1f}",
                               (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8)
    rates.set_xticks(range(len(sizes)), sizes)
    if any(report["sizes"][s]["systems"][m]["mb_s"] for s in sizes for m in systems):
        rates.set_yscale("log")
    rates.set_ylabel("MB/s = bytes / (time - start-up), log scale")
    rates.set_title(f"Word count, {report['machine']['cores']} cores, median of {report['options']['repeat']}")
    rates.legend()
    first = report["sizes"][sizes[0]]["systems"]
    startups.bar(systems, [first[m]["startup_s"] or 0.0 for m in systems], color=[f"C{i}" for i in range(len(systems))])
    startups.set_ylabel("seconds")
    startups.set_title("start-up (one-line input)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_table(report: dict[str, Any]) -> None:
    """A plain-text table of the figures."""
    print(f"{'size':>8} {'system':8} {'median s':>9} {'start-up s':>10} {'net s':>8} {'MB/s':>9} {'in-proc s':>9} "
          f"{'in-proc MB/s':>12} {'peak RSS MiB':>12}")
    print("(in-proc: job time on the corpus - job time on one line, inside the process with its cluster up)")
    for size, entry in report["sizes"].items():
        for system, figures in entry["systems"].items():
            if figures["median_s"] is None:
                print(f"{size:>8} {system:8} no successful run")
                continue
            rate = "n/a" if figures["mb_s"] is None else f"{figures['mb_s']:,.1f}"
            in_process = figures.get("mb_s_net_in_process")
            print(f"{size:>8} {system:8} {figures['median_s']:9.2f} {figures['startup_s']:10.2f} {figures['net_s']:8.2f}"
                  f" {rate:>9} {figures['net_in_process_s'] or 0:9.2f} {in_process or 0:12,.1f}"
                  f" {figures['peak_rss_max_bytes'] / 2**20:12,.0f}")
        for name, ratio in entry["ratios"].items():
            cross = entry.get("ratios_in_process", {}).get(name)
            print(f"{size:>8} {name}: {ratio:.2f}x" + (f" (in-process {cross:.2f}x)" if cross else ""))
        print(f"{size:>8} outputs agree: {entry['all_repetitions_agree']}")
    small = report.get("engine_small_job")
    if small:
        print(f"engine 1 MiB job with the cluster up: median {small['median_latency_s'] * 1000:.0f} ms back to back, "
              f"{small['median_latency_after_pause_s'] * 1000:.0f} ms after a 2 s pause "
              f"(first job {small['first_job_s']:.2f}s); oracle: "
              + ", ".join(f"{k} identical={v['identical']}" for k, v in small["oracle"].items()))
    for name, target in report["targets"].items():
        print(f"target {name}: measured {target['measured']}, met {target['met']}")


def main(argv: list[str]) -> int:
    """Run the benchmark; print a table; write JSON and PNG.  Returns the exit status."""
    if argv and argv[0] == "--run-one":
        return run_one(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        sizes = parse_sizes(args.size)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    problem = None
    if not systems or any(s not in SYSTEMS for s in systems):
        problem = f"--systems must be a comma-separated subset of {','.join(SYSTEMS)}, got {args.systems!r}"
    elif args.repeat < 1 or args.startup_repeat < 1:
        problem = f"--repeat and --startup-repeat must be at least 1, got {args.repeat} and {args.startup_repeat}"
    elif args.latency_repeat < 0:
        problem = f"--latency-repeat must be 0 or more, got {args.latency_repeat}"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "suite": "wordcount", "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(), "versions": versions(),
        "options": {"sizes": sizes, "repeat": args.repeat, "startup_repeat": args.startup_repeat, "systems": systems,
                    "latency_repeat": args.latency_repeat},
        "load_average_start": os.getloadavg(),
        "method": "each system runs as a whole process; throughput = bytes / (median time on the corpus - "
                  "median time on a one-line input, measured --startup-repeat times per repetition for all "
                  "sizes); systems alternate within each repetition; peak RSS = max over 0.2 s samples of the "
                  "summed RSS of the process tree (driver, GCS, raylet, workers)",
    }
    print(f"word count on {', '.join(sizes)}: {', '.join(systems)} alternating, {args.repeat} repetitions",
          file=sys.stderr)
    report["sizes"] = bench_all(sizes, systems, args)
    if "engine" in systems and args.latency_repeat:
        print("engine small-job latency (cluster up) and oracle check ...", file=sys.stderr)
        report["engine_small_job"] = bench_latency(sizes, args)
    if args.profile and "engine" in systems:
        print("profiling one engine run with py-spy ...", file=sys.stderr)
        profile = profile_engine(sizes[-1], args, args.out / "wordcount.profile.txt")
        report["profile"] = {"size": sizes[-1], "file": str(args.out / "wordcount.profile.txt"),
                             "in_tasks_top": profile["in_tasks"][:15], "self_top": profile["self"][:15]}
    report["load_average_end"] = os.getloadavg()
    report["finished_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    add_in_process_figures(report)
    report["targets"] = check_targets(report)
    report["targets_in_process_cross_check"] = check_targets(report, "mb_s_net_in_process", "ratios_in_process")
    (args.out / "wordcount.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "wordcount.png")
    print_table(report)
    print(f"wrote {args.out / 'wordcount.json'} and {args.out / 'wordcount.png'}")
    agree = all(e["all_repetitions_agree"] and not e["failures"] for e in report["sizes"].values())
    oracle = all(v["identical"] for v in report.get("engine_small_job", {}).get("oracle", {}).values())
    return 0 if agree and oracle else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
