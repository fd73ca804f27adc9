"""Where the engine's control plane (the worker pool and the masters) runs, and which of
its master processes are still alive."""

from __future__ import annotations

from typing import Any

import ray


def without_dead(masters: list[Any], wait_s: float = 0.2) -> list[Any]:
    """``masters`` without those whose ping fails within ``wait_s`` (Ray reports a dead
    actor at once); one that has not answered yet is still starting and is kept."""
    if not masters:
        return []
    pings = [master.ping.remote() for master in masters]
    ready, _ = ray.wait(pings, num_returns=len(pings), timeout=wait_s)
    dead = set()
    for ref in ready:
        try:
            ray.get(ref)
        except ray.exceptions.RayError:
            dead.add(ref)
    return [master for master, ping in zip(masters, pings) if ping not in dead]


def control_plane_node() -> str | None:
    """The head node's id (it holds the GCS: when it goes, the cluster goes), else the
    node this process runs on, else None."""
    try:
        for node in ray.nodes():
            if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
                return str(node["NodeID"])
        return ray.get_runtime_context().get_node_id()
    except Exception:  # not connected, or an old Ray without the head marker
        return None


def control_plane_placement() -> dict:
    """Scheduling options for the pool and masters: on the head node.

    They use no CPU and would otherwise land on any node; on the head they do not die with
    a worker node.  The affinity is hard: measured with Ray 2.60, a *soft* node affinity
    is ignored for detached actors (they landed on worker nodes and died with them).
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = control_plane_node()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)} if node else {}
