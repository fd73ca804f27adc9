"""The vocabulary of the flow core: the events executors feed it and the actions it returns.

Events say what happened (a batch was read, a call completed, a replica died, the sink
committed a batch, a scale was requested, time passed); actions say what to do next
(submit a piece to a replica, deliver a batch to the sink, start or retire a replica,
record dead rows, finish, fail).  Payloads (``Piece.payload``, call outputs) are opaque
to the core: tables inline, object references on Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import pyarrow as pa

from engine.common.bad_records import ErrorDescription
from engine.errors import PipelineFailedError
from engine.io.sources import SourceBatch

DeadGroup = tuple[pa.Table, ErrorDescription, int]  # rows, error, attempts


def batch_name(name: tuple[int, ...]) -> str:
    """The sink name of a piece from its sequence number and split path."""
    return "-".join(f"{part:09d}" if i == 0 else f"{part:03d}" for i, part in enumerate(name))


# -- events --------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchRead:
    """The source yielded a batch (rows, and bad records met on the way)."""

    batch: SourceBatch


@dataclass(frozen=True)
class SourceEnded:
    """No batch will be read any more: the source is exhausted (``exhausted=True``) or
    the run was asked to stop reading (a drain)."""

    exhausted: bool = True


@dataclass(frozen=True)
class SourceFailed:
    """Reading the source raised ``error``."""

    error: BaseException


@dataclass(frozen=True)
class CallCompleted:
    """Call ``call_id`` returned: its ``meta`` (see ``filtering.process_batch``) and one
    output payload per part."""

    call_id: int
    meta: dict
    outputs: tuple[object, ...]


@dataclass(frozen=True)
class CallFailed:
    """Call ``call_id`` raised (a filter-independent error: the run fails); ``reason`` is
    a one-line description."""

    call_id: int
    reason: str
    error: BaseException | None = None


@dataclass(frozen=True)
class ReplicaDied:
    """Replica ``replica`` of stage ``stage`` is gone; its calls in flight are lost."""

    stage: int
    replica: int


@dataclass(frozen=True)
class ReplicaStartFailed:
    """Replica ``replica`` of stage ``stage`` could not start (a replacement would fail the same way)."""

    stage: int
    replica: int
    reason: str


@dataclass(frozen=True)
class SinkCommitted:
    """The sink committed the piece named ``name`` (after ``failed_writes`` failed writes)."""

    name: tuple[int, ...]
    failed_writes: int = 0


@dataclass(frozen=True)
class SinkFailed:
    """The sink cannot go on (open, write or close failed for good)."""

    error: BaseException


@dataclass(frozen=True)
class ScaleRequested:
    """Set stage ``stage`` to ``replicas`` replicas."""

    stage: int
    replicas: int


@dataclass(frozen=True)
class Tick:
    """Time passed (the autoscalers look at their pipes, by the core's clock)."""


@dataclass(frozen=True)
class Cancel:
    """Stop now: nothing more is submitted or delivered."""


Event = Union[BatchRead, SourceEnded, SourceFailed, CallCompleted, CallFailed, ReplicaDied, ReplicaStartFailed,
              SinkCommitted, SinkFailed, ScaleRequested, Tick, Cancel]


# -- actions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Submit:
    """Run stage ``stage``'s filter on ``payload`` on replica ``replica`` as call ``call_id``;
    split the output into ``parts`` by column ``next_key`` (``None``: one part)."""

    call_id: int
    stage: int
    replica: int
    name: tuple[int, ...]
    payload: object
    next_key: str | None
    parts: int


@dataclass(frozen=True)
class Deliver:
    """Write ``payload`` (``rows`` rows) to the sink under ``batch_name(name)``, then report
    ``SinkCommitted(name)``.  Deliveries must be committed in the order they are given."""

    name: tuple[int, ...]
    payload: object
    rows: int

    @property
    def batch_name(self) -> str:
        """The stable sink name of this batch."""
        return batch_name(self.name)


@dataclass(frozen=True)
class StartReplica:
    """Start replica ``replica`` of stage ``stage`` (``replaces``: the dead one it stands in for)."""

    stage: int
    replica: int
    replaces: int | None = None


@dataclass(frozen=True)
class RetireReplica:
    """Replica ``replica`` of stage ``stage`` has no call left and is no longer needed."""

    stage: int
    replica: int


@dataclass(frozen=True)
class RecordDead:
    """Store dead rows of ``step`` (a stage id, or ``"read"`` for bad input records).

    ``key`` names them stably within the run (the batch they came from), the same in a
    resumed run of the same pipeline, so that a resumed run records them once.
    """

    step: str
    groups: tuple[DeadGroup, ...]
    source: dict = field(default_factory=dict)
    key: str = ""


@dataclass(frozen=True)
class Finish:
    """The run is over: ``status`` is ``"completed"``, ``"drained"`` or ``"cancelled"``."""

    status: str


@dataclass(frozen=True)
class Fail:
    """The run failed with ``error`` (one clear line naming the stage, source or sink)."""

    error: PipelineFailedError


Action = Union[Submit, Deliver, StartReplica, RetireReplica, RecordDead, Finish, Fail]
