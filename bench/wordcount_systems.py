"""The word counts being compared, each run inside its own timed process (``--run-one``).

Every runner reads the corpus directory's ``*.txt`` and writes Parquet to ``out``, and
returns what it measured inside its process (``connect_s``: cluster start or connection;
``job_s``: from then until the output is written).  ``address`` is None for an embedded
cluster of 2 CPUs, or a running cluster's address (``--address auto``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from bench.wordcount_measure import RESULT_PREFIX

# The bare Ray process the engine's start-up is compared with (the definition).
BARE_RAY = ("import ray; ray.init(address='local', num_cpus=2, include_dashboard=False); ray.shutdown()")
WARM_IDLE_S = 8.0  # after the warm-up job: the pool starts its other workers and spare, and idle workers load their compiled kernels
BARE_RAY_CONNECT = "import ray; ray.init(); ray.shutdown()"  # with --address: RAY_ADDRESS names the cluster


def run_engine(corpus: str, out: str, address: str | None = None, workers: int | None = None) -> dict[str, Any]:
    """The engine's word count (``jobs.wordcount_job``) over ``corpus`` into ``out``."""
    import engine
    from jobs.wordcount_job import wordcount_job

    started = time.perf_counter()
    engine.connect(address=address)
    connected = time.perf_counter()
    job = wordcount_job([corpus], out, options=engine.JobOptions(overwrite=True, progress=False, workers=workers))
    result = engine.run(job).result()
    done = time.perf_counter()
    engine.shutdown()
    return {"connect_s": connected - started, "job_s": done - connected, "engine_job_s": result.elapsed_s,
            "map_input_bytes": int(result.counters.get("map_input_bytes", 0))}


def run_engine_one_worker(corpus: str, out: str, address: str | None = None) -> dict[str, Any]:
    """The engine's word count with one worker actor (for the scaling chart)."""
    return run_engine(corpus, out, address, workers=1)


def run_raydata(corpus: str, out: str, address: str | None = None) -> dict[str, Any]:
    """Ray Data's idiomatic word count (defaults untouched) into the Parquet dataset ``out``."""
    import logging

    import pyarrow as pa
    import pyarrow.compute as pc
    import ray
    import ray.data

    def split_words(batch: pa.Table) -> pa.Table:
        return pa.table({"word": pc.list_flatten(pc.utf8_split_whitespace(batch["text"]))})

    started = time.perf_counter()
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
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


def run_polars(corpus: str, out: str, address: str | None = None) -> dict[str, Any]:
    """Polars: lines via ``scan_csv``, ``str.split(" ")``, ``explode``, ``group_by().len()``."""
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
    return {"connect_s": 0.0, "job_s": time.perf_counter() - started, "threads": pl.thread_pool_size()}


def run_duckdb(corpus: str, out: str, address: str | None = None) -> dict[str, Any]:
    """DuckDB (2 threads): lines via ``read_csv``, ``unnest(string_split(line, ' '))``, ``GROUP BY``."""
    import duckdb

    started = time.perf_counter()
    Path(out).mkdir(parents=True, exist_ok=True)
    connection = duckdb.connect(config={"threads": 2})
    pattern = os.path.join(corpus, "*.txt").replace("'", "''")
    target = os.path.join(out, "part-0.parquet").replace("'", "''")
    connection.execute(
        "COPY (SELECT word, count(*) AS count FROM ("
        f"  SELECT unnest(string_split(line, ' ')) AS word FROM read_csv('{pattern}', columns={{'line': 'VARCHAR'}},"
        "   header=false, delim='\x1f', quote='', escape='', auto_detect=false, strict_mode=false))"
        f" WHERE word <> '' GROUP BY word) TO '{target}' (FORMAT parquet)")
    connection.close()
    return {"connect_s": 0.0, "job_s": time.perf_counter() - started, "threads": 2}


def run_daft(corpus: str, out: str, address: str | None = None) -> dict[str, Any]:
    """Daft, native runner: lines via ``read_csv``, ``split(" ")``, ``explode``, ``groupby().agg(count)``."""
    import daft
    from daft import col

    started = time.perf_counter()
    daft.set_runner_native()
    lines = daft.read_csv(os.path.join(corpus, "*.txt"), has_headers=False, delimiter="\x1f", double_quote=False,
                          infer_schema=False, schema={"line": daft.DataType.string()}, allow_variable_columns=True)
    words = lines.select(col("line").split(" ").alias("word")).explode("word").where(col("word") != "")
    words.groupby("word").agg(col("word").count().alias("count")).write_parquet(out)
    return {"connect_s": 0.0, "job_s": time.perf_counter() - started}


def run_engine_latency(small_corpus: str, sample_file: str, out: str, repeat: int,
                       address: str | None = None) -> dict[str, Any]:
    """Small-job latency with the cluster up, and the engine vs ``Counter(text.split())``.

    After one warm-up job, ``WARM_IDLE_S`` of idle time (the pool starts its other workers,
    and workers load their compiled kernels once idle for 2 s) and a second warm-up job
    (the cluster is then as warm as one that has been up a while), the word count over ``small_corpus`` is submitted ``repeat`` times back to back, then ``repeat`` times each after a 2 s pause (a user at a prompt);
    each is timed from ``submit`` to ``result()``.  Then the engine's counts of
    ``small_corpus`` and of ``sample_file`` are compared exactly with a plain-Python oracle.
    """
    import engine
    from jobs.wordcount_job import wordcount_job

    started = time.perf_counter()
    engine.connect(address=address)
    connect_s = time.perf_counter() - started
    job = wordcount_job([small_corpus], out, options=engine.JobOptions(overwrite=True, progress=False))
    warm = time.perf_counter()
    result = engine.run(job).result()
    warmup_s = time.perf_counter() - warm
    time.sleep(WARM_IDLE_S)
    engine.run(job).result()  # once more, on every worker the pool now holds
    timings: dict[str, list[dict[str, float]]] = {"back_to_back": [], "after_2s_pause": []}
    for mode, pause_s in (("back_to_back", 0.0), ("after_2s_pause", 2.0)):
        for _ in range(repeat):
            time.sleep(pause_s)
            begin = time.perf_counter()
            handle = engine.run(job)
            submitted = time.perf_counter()
            result = handle.result()
            end = time.perf_counter()
            timings[mode].append({"latency_s": end - begin, "submit_s": submitted - begin,
                                  "master_job_s": result.elapsed_s})
    oracle = {"small_corpus": matches_oracle(result.table(), [Path(small_corpus)])}
    sample_job = wordcount_job([sample_file], out + "-sample", options=engine.JobOptions(overwrite=True, progress=False))
    oracle["sample_file"] = matches_oracle(engine.run(sample_job).result().table(), [Path(sample_file)])
    engine.shutdown()
    medians = {mode: statistics.median(t["latency_s"] for t in runs) if runs else None for mode, runs in timings.items()}
    return {"connect_s": connect_s, "first_job_s": warmup_s, "timings": timings,
            "median_latency_s": medians["back_to_back"], "median_latency_after_pause_s": medians["after_2s_pause"],
            "oracle": oracle}


def matches_oracle(table: Any, files: list[Path]) -> dict[str, Any]:
    """Whether ``table`` (word, count) equals ``Counter(text.split())`` over ``files`` exactly."""
    expected: Counter = Counter()
    for path in sorted(p for f in files for p in ([f] if f.is_file() else f.glob("*.txt"))):
        expected.update(path.read_text(encoding="utf-8").split())
    got = dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist()))
    return {"files": [str(f) for f in files], "identical": got == dict(expected),
            "words": sum(expected.values()), "distinct": len(expected)}


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "engine": run_engine, "engine-1worker": run_engine_one_worker, "raydata": run_raydata, "polars": run_polars,
    "duckdb": run_duckdb, "daft": run_daft}
SYSTEMS = tuple(RUNNERS)
CLUSTER_SYSTEMS = ("engine", "engine-1worker", "raydata")  # the ones that can run on a running Ray cluster


def run_one(argv: list[str]) -> int:
    """``--run-one SYSTEM CORPUS OUT [ADDRESS]`` or ``engine-latency SMALL SAMPLE OUT REPEAT [ADDRESS]``:
    run it and print one ``BENCH-RESULT {json}`` line."""
    system = argv[0]
    if system == "engine-latency":
        address = argv[5] if len(argv) > 5 else None
        result = run_engine_latency(argv[1], argv[2], argv[3], int(argv[4]), address)
    else:
        result = RUNNERS[system](argv[1], argv[2], argv[3] if len(argv) > 3 else None)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    if system == "daft":  # daft 0.7's native runner can abort in interpreter finalization (after its output is written)
        sys.stderr.flush()
        os._exit(0)
    return 0
