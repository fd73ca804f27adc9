"""The driver of the pipeline node-loss fault test: ``python -m tests.fault.node_loss_pipeline OUT``.

It starts an embedded cluster, runs a small, slowed pipeline into ``ParquetSink(OUT)``
(so the test can kill the cluster's GCS server while batches are being committed), waits
for the result and prints ``done <restarts> <resumed batches>``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import engine
from engine import ParquetSink, Pipeline, PipelineOptions, Stage, TableSource
from engine.runtime.node_watch import NodeWatchOptions

TOTAL = 2_000
BATCH_ROWS = 100


def slow_double(batch: pa.Table) -> pa.Table:
    """Adds ``y = 2x``, slowly, so the run lasts a few seconds."""
    time.sleep(0.15)
    return batch.append_column("y", pc.multiply(batch["x"], 2))


def node_loss_pipeline(out: str) -> Pipeline:
    """One stage, one replica, ordered, into a ParquetSink (resumable)."""
    source = TableSource(pa.table({"x": np.arange(TOTAL, dtype=np.int64)}), batch_rows=BATCH_ROWS)
    return Pipeline(source, [Stage("double", slow_double, replicas=1)], ParquetSink(out),
                    PipelineOptions(ordered=True))


def main(argv: list[str]) -> int:
    """Run the pipeline to the end, whatever happens to the cluster under it."""
    import ray.cloudpickle

    import tests.fault.node_loss_pipeline as this

    ray.cloudpickle.register_pickle_by_value(this)
    engine.connect(num_cpus=2, warm=False, node_watch=NodeWatchOptions(check_every_s=0.2, unreachable_after_s=2.0))
    try:
        handle = engine.run(this.node_loss_pipeline(argv[0]))
        result = handle.result(timeout_s=120)
        print(f"done {len(handle.recoveries)} {result.resumed_batches}", flush=True)
    finally:
        engine.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
