"""A job's recovery timeline: each worker lost, when the master noticed, what ran again
and when the job had made up for it (pure; no Ray).

The scheduler records a loss when it hears of one and marks each task it re-queued as it
completes again; a loss is recovered once every task it re-queued has completed (at once
if it re-queued none).  Times are the scheduler's clock readings; ``to_json`` gives them
in seconds since ``origin`` (the job's start).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class WorkerLoss:
    """One lost worker: ``why`` (as the master saw it), the node it ran on (None when not
    known) and whether Ray had declared that node dead, the tasks it made run again."""

    worker: str
    why: str
    noticed_at: float
    rerun: tuple[str, ...]
    node: str | None = None
    node_dead: bool = False
    waiting: set[str] = field(default_factory=set)
    recovered_at: float | None = None
    noticed_unix: float | None = None  # wall-clock time of ``noticed_at``, when known


class RecoveryLog:
    """The losses of one job, in the order they were noticed."""

    def __init__(self) -> None:
        self.losses: list[WorkerLoss] = []

    def lost(self, worker: str, why: str, now: float, rerun: tuple[str, ...], node: str | None = None,
             node_dead: bool = False, unix: float | None = None) -> None:
        """Record that ``worker`` was lost at ``now`` (``unix``: the same moment on the wall
        clock), making the tasks ``rerun`` run again."""
        loss = WorkerLoss(worker, why, now, tuple(rerun), node, node_dead, set(rerun), noticed_unix=unix)
        if not loss.waiting:
            loss.recovered_at = now
        self.losses.append(loss)

    def completed(self, task_id: str, now: float) -> None:
        """``task_id`` completed at ``now``: losses waiting only for it are recovered."""
        for loss in self.losses:
            if task_id in loss.waiting:
                loss.waiting.discard(task_id)
                if not loss.waiting:
                    loss.recovered_at = now

    def recovering_s(self, now: float) -> float:
        """Seconds during which at least one loss was not yet made up for (overlapping
        losses count once), up to ``now`` for those still open."""
        spans = sorted((loss.noticed_at, loss.recovered_at if loss.recovered_at is not None else now)
                       for loss in self.losses)
        total, end = 0.0, float("-inf")
        for start, stop in spans:
            if stop <= end:
                continue
            total += stop - max(start, end)
            end = stop
        return total

    def to_json(self, origin: float, now: float) -> dict:
        """The timeline: one entry per loss (times in seconds since ``origin``), the number
        of tasks run again and the seconds spent recovering."""
        entries = [{
            "worker": loss.worker, "node": loss.node, "node_dead": loss.node_dead, "why": loss.why,
            "noticed_at_s": round(loss.noticed_at - origin, 3), "noticed_at_unix": loss.noticed_unix,
            "tasks_rerun": len(loss.rerun),
            "rerun": list(loss.rerun),
            "recovered_at_s": None if loss.recovered_at is None else round(loss.recovered_at - origin, 3),
        } for loss in self.losses]
        return {"losses": entries, "tasks_rerun": sum(len(loss.rerun) for loss in self.losses),
                "recovering_s": round(self.recovering_s(now), 3)}
