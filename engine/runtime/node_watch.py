"""Noticing that the Ray cluster under a driver is gone, and deciding what to do (no Ray).

Ray does not tell a driver that its node died: calls simply never complete (a job that
lost its raylet used to hang for minutes).  So the driver watches the cluster itself:

- on the embedded cluster, the GCS server and raylet are processes this driver started;
  one that has exited is lost at once (``exited``);
- on an external cluster, the GCS address (TCP) and the local raylet's socket are
  probed; one that refuses connections for ``unreachable_after_s`` is lost.

``NodeWatch`` turns those observations into a ``NodeLoss``; ``decide`` turns a loss into
``Restart`` (the embedded cluster, a few times at most) or ``GiveUp`` with the one line
that tells the user what was lost and how to resume, worded for a MapReduce job, a
pipeline or a Lambda deployment (``Wording``).  The Ray side is a thin shell in
``engine.cluster``, ``engine.mapreduce.handle``, ``engine.pipeline.ray_executor`` and
``engine.lambda_arch.node_loss``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

# What the user reads for each watched component.
COMPONENTS = {"gcs_server": "GCS server", "raylet": "raylet"}


@dataclass(frozen=True)
class NodeWatchOptions:
    """How the driver watches its cluster (``engine.connect(node_watch=...)``).

    - ``check_every_s``: how often the cluster's processes are checked.
    - ``unreachable_after_s``: how long a component of an external cluster may refuse
      connections before it counts as lost (a process of the embedded cluster that has
      exited is lost at once).
    - ``max_restarts``: how many times one job, pipeline or Lambda deployment may restart
      the embedded cluster and continue; the next loss fails it.
    """

    check_every_s: float = 0.5
    unreachable_after_s: float = 3.0
    max_restarts: int = 2

    def __post_init__(self) -> None:
        for name in ("check_every_s", "unreachable_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"NodeWatchOptions.{name} must be a positive number of seconds, got {value!r}")
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise ValueError(f"NodeWatchOptions.max_restarts must be a whole number >= 0, got {self.max_restarts!r}")


@dataclass(frozen=True)
class NodeLoss:
    """What was lost: component names (keys of ``COMPONENTS``), whether they ``died``
    (exited) or stopped answering, and which cluster (``address`` None: the embedded one)."""

    lost: tuple[str, ...]
    died: bool
    embedded: bool
    address: str | None = None
    after_s: float = 0.0

    def what(self) -> str:
        """``"raylet died"``, ``"GCS server and raylet died"``, ``"raylet stopped answering for 3.0s"``."""
        names = [COMPONENTS.get(name, name) for name in self.lost]
        subject = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"{subject} died" if self.died else f"{subject} stopped answering for {self.after_s:.1f}s"

    def cluster(self) -> str:
        """``"embedded Ray cluster"`` or ``"Ray cluster at ADDRESS"``."""
        return "embedded Ray cluster" if self.embedded else f"Ray cluster at {self.address}"


class NodeWatch:
    """The verdict over a stream of observations of the watched components.

    Each ``observe`` call says, per component, whether its process has ``exited`` and
    whether it ``answers``; the first loss found is kept (a lost cluster stays lost).
    """

    def __init__(self, options: NodeWatchOptions, embedded: bool, address: str | None = None) -> None:
        self.options = options
        self.embedded = embedded
        self.address = address
        self.loss: NodeLoss | None = None
        self._silent_since: dict[str, float] = {}

    def observe(self, now: float, exited: Mapping[str, bool] | None = None,
                answers: Mapping[str, bool] | None = None) -> NodeLoss | None:
        """Record one round of checks made at ``now`` (seconds, any monotonic clock);
        return the loss, if there is one by now."""
        if self.loss is not None:
            return self.loss
        dead = tuple(sorted((name for name, gone in (exited or {}).items() if gone), key=_order))
        if dead:
            self.loss = NodeLoss(dead, died=True, embedded=self.embedded, address=self.address)
            return self.loss
        for name, answering in (answers or {}).items():
            if answering:
                self._silent_since.pop(name, None)
            else:
                self._silent_since.setdefault(name, now)
        silent = tuple(sorted((name for name, since in self._silent_since.items()
                               if now - since >= self.options.unreachable_after_s), key=_order))
        if silent:
            longest = max(now - self._silent_since[name] for name in silent)
            self.loss = NodeLoss(silent, died=False, embedded=self.embedded, address=self.address, after_s=longest)
        return self.loss


def _order(name: str) -> tuple[int, str]:
    """GCS server first, then raylet, then anything else by name."""
    known = list(COMPONENTS)
    return (known.index(name) if name in known else len(known), name)


@dataclass(frozen=True)
class Restart:
    """Restart the embedded cluster and continue the run (restart number ``number``, from 1)."""

    number: int


@dataclass(frozen=True)
class GiveUp:
    """Fail the run with ``message`` (one line: what was lost and how to continue)."""

    message: str


@dataclass(frozen=True)
class Wording:
    """How the lines of one kind of work name it and say how it continues: ``kind``
    ("job"), ``resume`` (what the user reruns once an external cluster is back), and the
    ``resumed`` / ``fresh`` halves of the line after a restart (``{name}`` is filled in)."""

    kind: str
    resume: str
    resumed: str
    fresh: str


JOB = Wording("job", "rerun it with engine.run(job, resume=True) to continue from its snapshots",
              "resumed job {name} from its snapshot", "ran job {name} again from the start (no snapshot yet)")
PIPELINE = Wording("pipeline",
                   "rerun it with engine.run(pipeline, resume=True) to continue from its last committed sink batch",
                   "resumed pipeline {name} from its last committed sink batch",
                   "ran pipeline {name} again from the start (no sink batch committed yet)")
DEPLOYMENT = Wording("deployment",
                     "reopen its directory with engine.run(architecture, \"ray\"): every acknowledged event is in "
                     "its log",
                     "reopened deployment {name} from its directory (every acknowledged event kept, views rebuilt)",
                     "reopened deployment {name} from its directory (every acknowledged event kept, views rebuilt)")


@dataclass
class Recovery:
    """One run's answers to cluster losses: restart the embedded cluster up to
    ``options.max_restarts`` times, otherwise give up with a line saying how to continue
    (``wording``: a MapReduce job, a pipeline or a Lambda deployment)."""

    name: str
    options: NodeWatchOptions = field(default_factory=NodeWatchOptions)
    restarts: int = 0
    wording: Wording = JOB

    def decide(self, loss: NodeLoss, blocker: str | None = None) -> Restart | GiveUp:
        """What to do about ``loss`` (a ``Restart`` counts against the limit).  ``blocker``
        says why this run cannot continue where it stopped (e.g. its sink keeps no
        commits): then it is never restarted, and the line says why."""
        w = self.wording
        stopped = f"{w.kind} {self.name} stopped"
        if blocker is not None:
            return GiveUp(f"{loss.cluster()} lost ({loss.what()}); {stopped} and cannot continue where it stopped: "
                          f"{blocker}")
        if not loss.embedded:
            return GiveUp(f"{loss.cluster()} lost ({loss.what()}); {stopped}; once the cluster is back, {w.resume}")
        if self.restarts >= self.options.max_restarts:
            return GiveUp(f"{loss.cluster()} lost ({loss.what()}) again after {self.restarts} restart(s); "
                          f"{stopped}; {w.resume}")
        self.restarts += 1
        return Restart(self.restarts)

    def resumed_line(self, loss: NodeLoss, from_snapshot: bool) -> str:
        """The one line saying what happened after a ``Restart`` (``from_snapshot``: there
        was something to continue from)."""
        how = (self.wording.resumed if from_snapshot else self.wording.fresh).format(name=self.name)
        return f"{loss.cluster()} lost ({loss.what()}); restarted it and {how}"


def in_flight_ingest(stored: tuple[int, int] | None) -> str:
    """What a Lambda ingest that met a cluster loss it could not recover from tells its
    caller: its events were stored in the durable log at offsets ``[begin, end)`` before
    the loss (acknowledged: sending them again would count them twice), or nothing of it
    was stored (``None``: not acknowledged, to be sent again once reopened)."""
    if stored is None:
        return "this ingest was not stored and is not acknowledged: send it again once the deployment is reopened"
    begin, end = stored
    if begin == end:
        return "this ingest stored no new event before the loss (all duplicates or rejected): nothing to send again"
    return (f"this ingest's events were stored in the log at offsets [{begin}, {end}) before the loss and are "
            f"acknowledged: do not send them again")


class ClusterLost(Exception):
    """Raised inside a run when the cluster under it is lost (``loss`` says how)."""

    def __init__(self, loss: NodeLoss) -> None:
        super().__init__(f"{loss.cluster()} lost ({loss.what()})")
        self.loss = loss
