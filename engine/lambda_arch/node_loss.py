"""A Lambda deployment on Ray whose cluster is lost: the Ray shell of
``engine.runtime.node_watch.Recovery`` (deployment wording).

The master log lives in the deployment's directory, written by this process: losing the
cluster loses no acknowledged event.  What dies with the cluster is the view shards and
the speed-layer pipeline (state rebuilt from the directory at will).  So every public
call of a Ray deployment first asks ``ClusterGuard.ensure``, and calls that met the loss
midway (their Ray waits are bounded and raise ``ClusterLost``) ask it again:

- on the embedded cluster it restarts the cluster, reopens the deployment's layers from
  its directory (the batch view it committed last, the log replayed since) and says so
  in one line on standard error; the call then carries on: an ingest whose batch was in
  the log before the loss is not stored again (the replay covers it) and returns its
  acknowledgement, a query is asked again on the new shards;
- on an external cluster (or after ``max_restarts``) the deployment fails: the call
  raises ``ClusterLostError`` (one line: what was lost and how to reopen), and an
  ingest's line also says whether its batch was stored, i.e. acknowledged (``node_watch.
  in_flight_ingest``); every later call, ``status()`` and ``result()`` report it.
"""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING

from engine import cluster
from engine.errors import ClusterLostError
from engine.runtime.node_watch import DEPLOYMENT, ClusterLost, GiveUp, NodeLoss, Recovery

if TYPE_CHECKING:
    from engine.lambda_arch.deployment import LambdaDeployment


class ClusterGuard:
    """One deployment's watch over the cluster its shards live on (``enabled``: on Ray)."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.enabled = enabled
        self.recovery = Recovery(name, cluster.node_watch_options(), wording=DEPLOYMENT)
        self.generation = cluster.generation()
        self.lines: list[str] = []  # one per restart of the embedded cluster
        self.error: ClusterLostError | None = None  # the loss the deployment gave up on
        self._lock = threading.Lock()

    def loss(self) -> NodeLoss | None:
        """The loss of the deployment's cluster, if noticed (also after another run of
        this process restarted it)."""
        return cluster.node_loss(self.generation) if self.enabled else None

    def raise_if_lost(self) -> None:
        """Raise ``ClusterLost`` if the cluster is lost (before calling into it)."""
        loss = self.loss()
        if loss is not None:
            raise ClusterLost(loss)

    def ensure(self, deployment: "LambdaDeployment", in_flight: str | None = None) -> None:
        """Return at once while the cluster is fine; after a loss, restart the embedded
        cluster and reopen ``deployment``'s layers, or raise ``ClusterLostError`` (with
        ``in_flight``, what became of the call's own work, appended)."""
        if self.error is None and self.loss() is None:
            return
        with deployment._ingest_lock, self._lock:  # the deployment's lock order: ingest before the rest
            while self.error is None:
                loss = self.loss()
                if loss is None:
                    return  # another call recovered meanwhile
                decision = self.recovery.decide(loss)
                if isinstance(decision, GiveUp):
                    self.error = ClusterLostError(decision.message)
                    deployment._abandon_cluster()
                    break
                try:
                    self._restart(deployment, loss)
                    return
                except ClusterLost:  # lost again while reopening: decide again
                    continue
        raise ClusterLostError(f"{self.error}; {in_flight}" if in_flight else str(self.error))

    def _restart(self, deployment: "LambdaDeployment", loss: NodeLoss) -> None:
        deployment._abandon_cluster()
        cluster.restart_embedded(self.generation)  # unless another run of this process did already
        self.generation = cluster.generation()
        deployment._reopen_layers()
        line = self.recovery.resumed_line(loss, from_snapshot=True)
        print(line, file=sys.stderr, flush=True)
        self.lines.append(line)
