"""A pipeline importable by name from a driver that is about to be killed and by the one that
resumes it (both must read the same batches, so that the same batches get the same names).

Run as a script it is that first driver: ``python -m tests.fault.resume_pipeline EXECUTOR OUT``
runs the pipeline into ``ParquetSink(OUT)`` (connecting its own embedded cluster for
"ray") and prints one line per sink part it sees, until it is killed.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import engine
from engine import ParquetSink, Pipeline, PipelineOptions, Stage, TableSource

TOTAL = 6_000
BATCH_ROWS = 100


def slow_double(batch: pa.Table) -> pa.Table:
    """Adds ``y = 2x``, slowly, so that the driver can be killed midway."""
    time.sleep(0.03)
    return batch.append_column("y", pc.multiply(batch["x"], 2))


def keep_odd(batch: pa.Table) -> pa.Table:
    """Keeps the rows of odd ``x``; fails on ``x % 500 == 7`` (those rows become dead letters)."""
    if (batch["x"].to_numpy() % 500 == 7).any():
        raise ValueError("x % 500 == 7")
    return batch.filter(pc.equal(pc.bit_wise_and(batch["x"], 1), 1))


def dead_letter_dir(out: str) -> str:
    """Where the pipeline writing to ``out`` keeps its dead letters."""
    return out + ".dead"


def source_table() -> pa.Table:
    """The input: ``x`` = 0..TOTAL-1 and a key ``k = x mod 13``."""
    x = np.arange(TOTAL, dtype=np.int64)
    return pa.table({"x": x, "k": x % 13})


def resumable_pipeline(out: str) -> Pipeline:
    """The pipeline both drivers run: two stages (the second keyed), ordered, into a ParquetSink,
    dead letters beside it."""
    stages = [Stage("double", slow_double, replicas=2), Stage("odd", keep_odd, replicas=2, key="k")]
    return Pipeline(TableSource(source_table(), batch_rows=BATCH_ROWS), stages, ParquetSink(out),
                    PipelineOptions(ordered=True, dead_letter_dir=dead_letter_dir(out)))


def main(argv: list[str]) -> int:
    """Be the driver that gets killed mid-run."""
    from pathlib import Path

    from tests.fault.resume_pipeline import resumable_pipeline as by_name

    executor, out = argv[0], argv[1]
    if executor == "ray":
        import ray.cloudpickle

        import tests.fault.resume_pipeline as this

        ray.cloudpickle.register_pickle_by_value(this)
        engine.connect(num_cpus=2)
    handle = engine.run(by_name(out), executor)
    while not handle.done():
        print(len(list(Path(out).glob("part-*.parquet"))), flush=True)
        time.sleep(0.05)
    handle.result()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
