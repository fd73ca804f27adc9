"""Scatter-gather faults: a shard host's process is SIGKILLed.

The hosts answer over their same-node Unix sockets (``local_channel``): the socket of a
killed host breaks and Ray names the host dead.  The test kills the host it knows holds
a given shard (from ``service.assignment``), so it does not depend on scheduling.  While the host is dead or being replaced, answers are
partial and name exactly that host's shards; once the replacement has reloaded them,
answers are complete and equal to a plain-Python oracle again.
"""

from __future__ import annotations

import os
import signal
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import ray

import engine
from engine.scatter_gather import ScatterGather, ScatterGatherOptions, concat_replies

pytestmark = pytest.mark.fault

SHARDS = [pa.table({"x": list(range(100 * i, 100 * i + 5 + i))}) for i in range(6)]


def rows_above(shard: pa.Table, request: dict) -> pa.Table:
    return shard.filter(pc.greater(shard["x"], request["above"]))


def oracle(above: int, shards: list[int]) -> list[int]:
    return sorted(x for i in shards for x in SHARDS[i]["x"].to_pylist() if x > above)


def values(result: object) -> list[int]:
    return sorted(result.value["x"].to_pylist()) if result.value is not None else []  # type: ignore[attr-defined]


def _kill(actor: object) -> int:
    """SIGKILL the actor's process; return once Ray reports the actor dead."""
    pid = ray.get(actor.describe.remote())["pid"]  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGKILL)
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        try:
            ray.get(actor.describe.remote(), timeout=1)  # type: ignore[attr-defined]
        except Exception:
            return pid
        time.sleep(0.05)
    raise AssertionError(f"shard host pid {pid} still answers after SIGKILL")


def _until_complete(service: object, doomed: list[str], above: int) -> int:
    """Send requests until one is complete; every partial one must name exactly the
    doomed shards and hold exactly the others' rows.  Returns how many were partial."""
    others = [i for i in range(len(SHARDS)) if f"shard-{i}" not in doomed]
    partial = 0
    give_up = time.monotonic() + 120
    while True:
        result = service.gather({"above": above})  # type: ignore[attr-defined]
        if not result.partial:
            assert values(result) == oracle(above, list(range(len(SHARDS))))
            return partial
        partial += 1
        assert result.missing == doomed and set(result.errors) == set(doomed), result
        assert values(result) == oracle(above, others)
        assert time.monotonic() < give_up, "the dead shard host was never replaced"
        time.sleep(0.05)


def test_a_killed_shard_host_is_replaced_and_its_shards_reloaded(isolated_ray: None) -> None:
    from engine.cluster import connect

    connect(num_cpus=2)
    spec = ScatterGather(SHARDS, rows_above, concat_replies(),
                         ScatterGatherOptions(deadline_s=5.0, hosts=2, warmup_request={"above": 0}))
    everything = list(range(len(SHARDS)))
    with engine.run(spec) as service:
        assert service.assignment == [["shard-0", "shard-2", "shard-4"], ["shard-1", "shard-3", "shard-5"]]
        assert values(service.gather({"above": 3})) == oracle(3, everything)
        assert service.status()["local_channel_hosts"] == 2  # requests go over the Unix sockets

        doomed = service.assignment[1]
        victim = service.host_of("shard-3")
        old_pid = _kill(victim)
        first = service.gather({"above": 3})  # the request that finds the host dead
        assert first.partial and first.missing == doomed and set(first.errors) == set(doomed)
        assert values(first) == oracle(3, [0, 2, 4])
        _until_complete(service, doomed, 3)
        assert service.status()["host_restarts"] == 1
        assert service.status()["local_channel_hosts"] == 2  # the replacement has its own
        replacement = service.host_of("shard-3")
        assert ray.get(replacement.describe.remote())["pid"] != old_pid
        assert ray.get(replacement.describe.remote())["shards"] == {
            name: SHARDS[int(name.split("-")[1])].num_rows for name in doomed}
        for above in (-1, 150, 420):
            result = service.gather({"above": above})
            assert not result.partial and values(result) == oracle(above, everything)

        # Again, found this time by a long-running request: its answer is done and names
        # the dead host's shards; the host is replaced once more.
        _kill(service.host_of("shard-1"))
        request_id = service.submit({"above": 0})
        late = service.wait(request_id, timeout_s=60)
        assert late.done and late.missing == doomed and set(late.errors) == set(doomed)
        assert values(late) == oracle(0, [0, 2, 4])
        _until_complete(service, doomed, 0)
        assert service.status()["host_restarts"] == 2
        final = service.wait(service.submit({"above": 7}), timeout_s=60)
        assert final.done and not final.partial and values(final) == oracle(7, everything)
    ray.shutdown()
