"""Lambda faults: a view shard dies, a speed-layer replica dies, the whole driver dies.

Each test runs its own Ray cluster and checks every answer against the oracle after the
fault, so nothing acknowledged is lost or counted twice.  While a shard is dead, queries
fail with a ``QueryFailedError`` naming it, and fail fast once its circuit breaker opens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import ray

from datasets.adevents import AdEventSpec, generate_events
from engine.errors import QueryFailedError
from engine.lambda_arch import LambdaOptions
from jobs.adtech import AdEventOracle, AdTech
from jobs.adtech.testing import check_answers

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
_SPEC = AdEventSpec(events=6_000, users=300, advertisers=10, span_hours=4, seed=17, duplicate_rate=0.03)


def _connect() -> None:
    from engine.cluster import connect

    connect(num_cpus=2)


def _wait_dead(actor: object) -> None:
    """ray.kill is asynchronous: wait until the actor no longer answers."""
    for _ in range(100):
        try:
            ray.get(actor.status.remote(), timeout=1)  # type: ignore[attr-defined]
        except Exception:
            return
        time.sleep(0.05)
    raise AssertionError("killed actor still answers")


def test_a_dead_view_shard_is_rebuilt_from_the_log(isolated_ray: None, tmp_path: Path) -> None:
    _connect()
    events = generate_events(_SPEC)
    oracle = AdEventOracle()
    with AdTech.start(tmp_path, "ray", LambdaOptions(batch_executor="inline", shards=2)) as lam:
        for start in range(0, 4_000, 1_000):
            lam.ingest(events.slice(start, 1_000))
            oracle.ingest(events.slice(start, 1_000))
        lam.recompute_batch()
        lam.ingest(events.slice(4_000, 1_000))
        oracle.ingest(events.slice(4_000, 1_000))
        lam.wait_visible()
        ray.kill(lam.shard_actors()[1])  # crash: the real-time state of shard 1 is gone
        _wait_dead(lam.shard_actors()[1])
        assert not lam.speed_layer_healthy()
        with pytest.raises(QueryFailedError, match="shard-1") as failure:
            lam.ads_shown(hours=24)
        assert failure.value.shards == ["shard-1"]
        assert lam.metrics()["queries"]["breakers"] == {"shard-0": "closed", "shard-1": "open"}
        with pytest.raises(QueryFailedError, match="shard-1 is unavailable .*circuit breaker is open"):
            lam.active_viewers(minutes=5)  # fails fast now
        assert lam.heal()
        lam.ingest(events.slice(5_000, 500))
        oracle.ingest(events.slice(5_000, 500))
        lam.wait_visible()
        check_answers(lam, oracle)
        ray.kill(lam.shard_actors()[0])  # crash again: this time ingest notices and rebuilds by itself
        _wait_dead(lam.shard_actors()[0])
        for start in range(5_500, 6_000, 100):
            lam.ingest(events.slice(start, 100))
            oracle.ingest(events.slice(start, 100))
        lam.wait_visible()
        answers = check_answers(lam, oracle)
        assert answers["ads_shown_1440"].speed_offset == len(oracle.rows)
    ray.shutdown()


def test_a_dead_speed_replica_is_replaced_without_loss(isolated_ray: None, tmp_path: Path) -> None:
    _connect()
    events = generate_events(_SPEC)
    oracle = AdEventOracle()
    with AdTech.start(tmp_path, "ray", LambdaOptions(batch_executor="inline", shards=2)) as lam:
        for number, start in enumerate(range(0, events.num_rows, 500)):
            lam.ingest(events.slice(start, 500))
            oracle.ingest(events.slice(start, 500))
            if number == 3:
                for actor in lam.speed_replica_actors():
                    ray.kill(actor)
            if number % 3 == 0:
                check_answers(lam, oracle)
        lam.wait_visible(timeout_s=120)
        answers = check_answers(lam, oracle)
        assert answers["ads_shown_5"].speed_offset == len(oracle.rows)
    ray.shutdown()


_CRASHING_DRIVER = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, {root!r})
    from datasets.adevents import AdEventSpec, generate_events
    from engine.cluster import connect
    from engine.lambda_arch import LambdaOptions
    from jobs.adtech import AdTech
    connect(num_cpus=2)
    events = generate_events(AdEventSpec(**json.loads({spec!r})))
    lam = AdTech.start({directory!r}, "ray", LambdaOptions(batch_executor="inline", shards=2))
    for number, start in enumerate(range(0, 5_000, 1_000)):
        ack = lam.ingest(events.slice(start, 1_000))
        print(json.dumps({{"batch": number, "end": ack.end_offset}}), flush=True)
        if number == 2:
            lam.recompute_batch()
    os._exit(9)  # the driver dies: no close, no shutdown
""")


def test_the_directory_is_reopened_after_the_driver_dies(isolated_ray: None, tmp_path: Path) -> None:
    spec_json = json.dumps(_SPEC.__dict__)
    script = _CRASHING_DRIVER.format(root=str(ROOT), spec=spec_json, directory=str(tmp_path))
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240,
                         env={**os.environ, "RAY_DEDUP_LOGS": "1"})
    acks = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 9 and len(acks) == 5, run.stderr[-2000:]
    events = generate_events(_SPEC)
    oracle = AdEventOracle()
    for start in range(0, 5_000, 1_000):
        oracle.ingest(events.slice(start, 1_000))
    assert len(oracle.rows) == acks[-1]["end"]
    _connect()
    with AdTech.start(tmp_path, "ray", LambdaOptions(batch_executor="inline", shards=2)) as lam:
        assert lam.end_offset == acks[-1]["end"]
        assert lam.snapshot[0] == acks[2]["end"]  # the committed batch view survived
        lam.wait_visible()
        check_answers(lam, oracle)
        lam.ingest(events.slice(5_000, 1_000))  # and the answers continue
        oracle.ingest(events.slice(5_000, 1_000))
        lam.recompute_batch()
        lam.wait_visible()
        answers = check_answers(lam, oracle)
        assert answers["roi"].batch_offset == len(oracle.rows)
    ray.shutdown()
