"""What Ray knows about the cluster's nodes, for a master watching its workers' nodes.

Ray declares a node dead as soon as its raylet leaves (a node removed or stopped) or, when
the raylet vanishes without a word, once the GCS health checks give up on it (about 15 s
with Ray's defaults); a call to an actor on such a node fails earlier (``ActorUnavailableError``,
about 2.5 s).  The master uses both: its calls' failures and this node table.
"""

from __future__ import annotations

import ray

# How often a master reads the node table (one GCS call).
NODE_CHECK_S = 1.0


def dead_nodes() -> dict[str, str]:
    """Node id -> why Ray declared it dead, for every node Ray knows is dead ({} when the
    table cannot be read: no verdict is not a death)."""
    try:
        return {str(node["NodeID"]): str(node.get("DeathReasonMessage") or "dead")
                for node in ray.nodes() if not node.get("Alive", True)}
    except Exception:  # a GCS hiccup: the calls' own failures still tell
        return {}
