"""Losing a whole node of a simulated multi-node cluster during the reduce phase.

The node's worker held completed map outputs in its memory; those maps run again
(attempt 2) and every other map is reused (attempt 1), on the capacity that is left (the
node does not come back).  The job's recovery timeline names the lost worker, its node and
the maps it made run again.  The output equals local mode.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest
import ray
from ray.cluster_utils import Cluster

import engine
from engine import JobOptions
from jobs.wordcount_job import SUM_COUNTS, count_words_in_lines
from tests.fault.test_mapreduce_faults import make_corpus
from tests.oracles import table_to_dict, wordcount_oracle

pytestmark = pytest.mark.fault


def slow_sum(table: pa.Table) -> pa.Table:
    time.sleep(0.4)  # keeps the reduce phase open long enough to lose a node in it
    return SUM_COUNTS(table)


def job_for(tmp_path: Path, output: str) -> engine.MapReduceJob:
    return engine.MapReduceJob(
        name="node-loss", source=engine.TextSource(str(tmp_path / "in"), split_size=3000), map=count_words_in_lines,
        combine=SUM_COUNTS, reduce=slow_sum, keys="word", reducers=10, output=str(tmp_path / output),
        # start_with_workers=None: both workers (one per node) take maps from the start, so
        # the lost node held some maps and not others
        options=JobOptions(workers=2, start_with_workers=None, speculation=False, heartbeat_interval_s=0.2,
                           heartbeat_timeout_s=5.0))


def test_node_loss_reexecutes_only_the_maps_it_held(isolated_ray: None, tmp_path: Path) -> None:
    files = make_corpus(tmp_path / "in", files=2, lines=500)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1), cluster.add_node(num_cpus=1)]
    try:
        engine.connect(address=cluster.address, warm=False)
        handle = engine.run(job_for(tmp_path, "out"))
        deadline = time.monotonic() + 120
        status = handle.status(tasks=True)
        while status.get("phase") != "reduce" or status["reduces"]["completed"] < 1:
            assert time.monotonic() < deadline, f"reduce phase never started: {status}"
            time.sleep(0.05)
            status = handle.status(tasks=True)
        holders = {t["task_id"]: t["location"] for t in status["tasks"] if t["task_id"].startswith("map")}
        worker_nodes = {name: ray.get(ray.get_actor(name, namespace="engine").ping.remote())["node"]
                        for name in set(holders.values())}
        victim_worker = sorted(worker_nodes)[0]
        victim = next(n for n in nodes if n.node_id == worker_nodes[victim_worker])
        cluster.remove_node(victim)  # its CPU does not come back: the job goes on with what is left
        result = handle.result(timeout_s=240)
        attempts = result.attempts
        lost = sorted(t for t, w in holders.items() if w == victim_worker)
        kept = sorted(t for t, w in holders.items() if w != victim_worker)
        assert lost and kept
        assert all(attempts[t] >= 2 for t in lost), ({t: attempts[t] for t in lost}, holders, victim_worker,
                                                     result.details.get("events"))
        assert all(attempts[t] == 1 for t in kept), ({t: attempts[t] for t in kept}, holders, victim_worker,
                                                       result.details.get("events"))
        assert victim_worker in result.details["failed_workers"]
        loss = next(loss for loss in result.details["recovery"]["losses"] if loss["worker"] == victim_worker)
        assert loss["node"] == victim.node_id and set(lost) <= set(loss["rerun"]), result.details["recovery"]
        assert loss["recovered_at_s"] is not None and loss["recovered_at_s"] >= loss["noticed_at_s"]
        assert not result.details["takeover"], result.details.get("events")  # the masters live on the head node
        local = engine.run(job_for(tmp_path, "local"), "inline").result()
        assert result.table().equals(local.table())
        assert table_to_dict(result.table()) == wordcount_oracle(files)
    finally:
        engine.shutdown()
        cluster.shutdown()
