"""The driver of the node-loss fault test: ``python -m tests.fault.node_loss_job IN OUT``.

It starts an embedded cluster, runs a word count whose maps are slowed (so the test can
kill the cluster's raylet while maps are running) and snapshots after every task, waits
for the result and prints ``done <restarts>``.  The test kills the raylet from outside.
"""

from __future__ import annotations

import sys
import time

import pyarrow as pa

import engine
from engine.runtime.node_watch import NodeWatchOptions
from jobs.wordcount_job import SUM_COUNTS, count_words_in_lines


def slow_map(batch: pa.Table) -> pa.Table:
    """The word-count map, slowed so the map phase lasts a few seconds."""
    time.sleep(0.4)
    return count_words_in_lines(batch)


def node_loss_job(inputs: str, output: str) -> engine.MapReduceJob:
    """Small splits, slow maps, a snapshot after every completed task."""
    return engine.MapReduceJob(
        name="node-loss", source=engine.TextSource(inputs, split_size=1000), map=slow_map, combine=SUM_COUNTS,
        reduce=SUM_COUNTS, keys="word", reducers=4, output=output,
        options=engine.JobOptions(workers=2, speculation=False, snapshot_every_tasks=1, snapshot_every_s=0.5))


def main(argv: list[str]) -> int:
    """Run the job to the end, whatever happens to the cluster under it; with a third
    argument ``external``, on a cluster this driver joins rather than embeds (a one-node
    ``ray.cluster_utils.Cluster``), where a lost node fails the job: print its one line."""
    from tests.fault.node_loss_job import node_loss_job as by_name  # not __main__'s copy: same fingerprint

    watch = NodeWatchOptions(check_every_s=0.2, unreachable_after_s=2.0)
    if argv[2:] == ["external"]:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
        try:
            engine.connect(address=cluster.address, warm=False, node_watch=watch)
            try:
                engine.run(by_name(argv[0], argv[1])).result(timeout_s=120)
                print("done", flush=True)
            except engine.JobFailedError as error:
                print(f"failed: {error}", flush=True)
            engine.shutdown()
        finally:
            cluster.shutdown()
        return 0
    engine.connect(num_cpus=2, warm=False, node_watch=watch)
    try:
        result = engine.run(by_name(argv[0], argv[1])).result(timeout_s=120)
        print(f"done {result.details.get('cluster_restarts', 0)}", flush=True)
    finally:
        engine.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
