"""Noticing that the Ray cluster under a driver is gone, and deciding what to do (no Ray).

Ray does not tell a driver that its node died: calls simply never complete (a job that
lost its raylet used to hang for minutes).  So the driver watches the cluster itself:

- on the embedded cluster, the GCS server and raylet are processes this driver started;
  one that has exited is lost at once (``exited``);
- on an external cluster, the GCS address (TCP) and the local raylet's socket are
  probed; one that refuses connections for ``unreachable_after_s`` is lost.

``NodeWatch`` turns those observations into a ``NodeLoss``; ``decide`` turns a loss into
``Restart`` (the embedded cluster, a few times at most) or ``GiveUp`` with the one line
that tells the user what was lost and how to resume.  The Ray side is a thin shell in
``engine.cluster`` and ``engine.mapreduce.handle``.
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
    - ``max_restarts``: how many times one job may restart the embedded cluster and
      resume; the next loss fails the job.
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
    """Restart the embedded cluster and resume the job (restart number ``number``, from 1)."""

    number: int


@dataclass(frozen=True)
class GiveUp:
    """Fail the job with ``message`` (one line: what was lost and how to resume)."""

    message: str


@dataclass
class Recovery:
    """One job's answers to cluster losses: restart the embedded cluster up to
    ``options.max_restarts`` times, otherwise give up with a line saying how to resume."""

    job: str
    options: NodeWatchOptions = field(default_factory=NodeWatchOptions)
    restarts: int = 0

    def decide(self, loss: NodeLoss) -> Restart | GiveUp:
        """What to do about ``loss`` (a ``Restart`` counts against the limit)."""
        resume = "rerun it with engine.run(job, resume=True) to continue from its snapshots"
        if not loss.embedded:
            return GiveUp(f"{loss.cluster()} lost ({loss.what()}); job {self.job} stopped; once the cluster is "
                          f"back, {resume}")
        if self.restarts >= self.options.max_restarts:
            return GiveUp(f"{loss.cluster()} lost ({loss.what()}) again after {self.restarts} restart(s); "
                          f"job {self.job} stopped; {resume}")
        self.restarts += 1
        return Restart(self.restarts)

    def resumed_line(self, loss: NodeLoss, from_snapshot: bool) -> str:
        """The one line saying what happened after a ``Restart``."""
        how = (f"resumed job {self.job} from its snapshot" if from_snapshot
               else f"ran job {self.job} again from the start (no snapshot yet)")
        return f"{loss.cluster()} lost ({loss.what()}); restarted it and {how}"
