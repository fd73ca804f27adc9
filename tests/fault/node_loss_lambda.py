"""The driver of the Lambda node-loss fault test: ``python -m tests.fault.node_loss_lambda DIR``.

It starts an embedded cluster, opens a tiny Lambda deployment on ``DIR/deployment`` (one
view: per-key sums and counts), ingests ``BATCHES`` small batches at a slow pace with a
query after each (writing how many were acknowledged to ``DIR/progress``, so the test can
kill the cluster's GCS server mid-stream), then waits until every acknowledged event is
visible and writes ``DIR/result.json``: the acknowledged batches, the ingests that
raised, the final answer and the restarts.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import engine
from engine.common.atomic_files import write_json_atomically
from engine.common.combine import GroupByAggregate
from engine.lambda_arch import EventContract, LambdaArchitecture, LambdaOptions, Query, ShardSnapshot, View
from engine.runtime.node_watch import NodeWatchOptions

BATCHES, ROWS = 30, 20
SCHEMA = pa.schema([pa.field("id", pa.string(), nullable=False), pa.field("key", pa.string(), nullable=False),
                    pa.field("value", pa.int64(), nullable=False)])


def batch(index: int) -> pa.Table:
    """Batch ``index``: events ``id = e<i>``, ``key = k<i mod 7>``, ``value = i``."""
    numbers = range(index * ROWS, (index + 1) * ROWS)
    return pa.table({"id": [f"e{i}" for i in numbers], "key": [f"k{i % 7}" for i in numbers],
                     "value": list(numbers)}, schema=SCHEMA)


def _with_count(events: pa.Table) -> pa.Table:
    return events.select(["key", "value"]).append_column("n", pa.array(np.ones(events.num_rows, dtype=np.int64)))


def _sums_on_shard(snapshot: ShardSnapshot, request: dict[str, Any]) -> dict[str, list[int]]:
    return {row["key"]: [row["value"], row["n"]] for row in snapshot.table("sums").to_pylist()}


def _merge(replies: list[dict], request: dict[str, Any]) -> dict:
    merged: dict = {}
    for reply in replies:
        merged.update(reply)
    return merged


def architecture(directory: str) -> LambdaArchitecture:
    """One view, one query, one shard; the batch job inline (the test is about the cluster)."""
    view = View("sums", _with_count, GroupByAggregate("key", {"value": "sum", "n": "sum"}), shard_by=("key",),
                columns=("key", "value"))
    query = Query("sums", _sums_on_shard, _merge, views=("sums",))
    return LambdaArchitecture(directory, EventContract(SCHEMA), [view], [query],
                              LambdaOptions(shards=1, batch_executor="inline", query_deadline_s=2.0,
                                            event_time_window=None))


def main(argv: list[str]) -> int:
    """Ingest every batch whatever happens to the cluster; record what was acknowledged."""
    import ray.cloudpickle

    import tests.fault.node_loss_lambda as this

    ray.cloudpickle.register_pickle_by_value(this)
    out = Path(argv[0])
    engine.connect(num_cpus=2, warm=False, node_watch=NodeWatchOptions(check_every_s=0.2, unreachable_after_s=2.0))
    acked: list[int] = []
    raised: list[str] = []
    try:
        deployment = engine.run(this.architecture(str(out / "deployment")))
        for index in range(BATCHES):
            try:
                deployment.ingest(this.batch(index))
                acked.append(index)
            except engine.EngineError as error:
                raised.append(f"{index}: {error}")
            deployment.query("sums")
            if index == 4:
                deployment.recompute_batch()  # the reopen starts from this batch view
            (out / "progress").write_text(str(len(acked)))
            time.sleep(0.1)
        deployment.wait_visible(timeout_s=60)
        answer = deployment.query("sums")
        restarts = deployment.counters()["cluster_restarts"]
        deployment.close()
        write_json_atomically(out / "result.json", {"acked": acked, "raised": raised, "sums": answer.value,
                                                    "speed_offset": answer.speed_offset, "restarts": restarts})
    finally:
        engine.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
