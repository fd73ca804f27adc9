"""What the scheduler asks an executor to do, and what a finished attempt reports.

The scheduler (``engine.mapreduce.scheduler``) never performs anything itself: each
event it is told about returns a list of these actions, which the Ray master and the
inline executor carry out in order.  All of them are plain data without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from engine.common.dead_letters import DeadLetter
from engine.errors import JobFailedError
from engine.io.splits import InputSplit

MapKey = tuple[str, int]  # (map task id, attempt): names one map output held by a worker


@dataclass
class AttemptReport:
    """What a worker reports when an attempt of a task ran to its end.

    ``path`` is a reduce's committed part (None for a map, whose output stays with
    ``worker``); ``elapsed_s`` is the time the worker measured; ``counters`` and
    ``dead_letters`` are this attempt's own.
    """

    task_id: str
    attempt: int
    worker: str
    kind: str
    elapsed_s: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    path: str | None = None
    input_bytes: int = 0
    rows: int = 0
    schema: str = ""  # a reduce part's schema (``tasks.schema_text``)


@dataclass(frozen=True)
class Launch:
    """Start attempt ``attempt`` of a task on ``worker``.

    A map reads ``split``; a reduce reads partition ``partition`` from the map outputs in
    ``sources`` (worker -> the map outputs it holds).
    """

    task_id: str
    kind: str
    attempt: int
    worker: str
    speculative: bool = False
    split: InputSplit | None = None
    partition: int | None = None
    sources: dict[str, tuple[MapKey, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Cancel:
    """Stop an attempt that lost the race against another attempt of its task."""

    task_id: str
    attempt: int
    worker: str


@dataclass(frozen=True)
class DropOutput:
    """``worker`` may forget these map outputs: nobody will read them."""

    worker: str
    keys: tuple[MapKey, ...]


@dataclass(frozen=True)
class Commit:
    """An attempt's completion was accepted: commit what it produced beside its output
    (its dead letters).  Emitted once per accepted completion."""

    report: AttemptReport


@dataclass(frozen=True)
class CheckWorker:
    """``worker`` may be gone (a reduce could not fetch from it): probe it now."""

    worker: str


@dataclass(frozen=True)
class TakeSnapshot:
    """Write ``state`` (JSON-safe) to the snapshot store."""

    state: dict


@dataclass(frozen=True)
class Finish:
    """Every task completed: commit the job (``counters`` are its totals)."""

    counters: dict[str, int]


@dataclass(frozen=True)
class Fail:
    """The job failed with ``error`` (a one-line ``JobFailedError``)."""

    error: JobFailedError


Action = Union[Launch, Cancel, DropOutput, Commit, CheckWorker, TakeSnapshot, Finish, Fail]
