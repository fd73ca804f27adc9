"""Per-stage metrics and the result of a pipeline run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from engine.errors import ResultNotCollectedError
from engine.io.convert import ray_dataset_from_table, to_pandas, to_polars


@dataclass
class StageMetrics:
    """Counters of one stage (or of the source, id ``"source"``, or the sink, id ``"sink"``).

    ``pipe_depth`` is the batches now in the stage's input pipe (waiting, being processed,
    or done and waiting for room downstream); ``max_pipe_depth`` the most ever seen.
    ``errors`` counts failed filter calls (each failed attempt of a batch or of a piece
    of it; for the sink, writes that failed after their retries); ``dead_letters`` the rows sent to the dead-letter store; ``busy_s`` the time
    replicas spent inside the filter; ``replica_restarts`` replicas replaced after dying.
    A stage chained after another (``PipelineOptions.chaining``) has no pipe of its own
    (its depths stay 0) and shares that stage's replicas (and their restarts).
    """

    stage_id: str
    replicas: int = 0
    batches_in: int = 0
    batches_out: int = 0
    rows_in: int = 0
    rows_out: int = 0
    errors: int = 0
    dead_letters: int = 0
    pipe_depth: int = 0
    max_pipe_depth: int = 0
    busy_s: float = 0.0
    replica_restarts: int = 0

    def note_depth(self, depth: int) -> None:
        """Record the current pipe depth and keep the maximum."""
        self.pipe_depth = depth
        if depth > self.max_pipe_depth:
            self.max_pipe_depth = depth

    def as_dict(self) -> dict[str, object]:
        """A plain dict (for JSON and printing)."""
        return dict(self.__dict__)


@dataclass
class PipelineResult:
    """What a finished (or cancelled) run gives back.

    ``status`` is ``"completed"``, ``"drained"`` (stopped reading the source early, all
    read batches delivered) or ``"cancelled"`` (``"failed"`` only on the failed run's
    record; ``result()`` raises the error instead); ``table`` is the collected output for a
    ``CollectSink`` (else ``None``); ``metrics`` maps stage id, ``"source"`` (rows read;
    ``dead_letters`` counts bad input records) and ``"sink"`` to counters;
    ``dead_letter_ids`` are the letters written to the dead-letter store, and
    ``unstored_dead`` holds ``(step, rows, error)`` when no store directory was set;
    ``resumed_batches`` counts the batches a resumed run found committed by an earlier run
    and did not deliver again.
    """

    status: str
    metrics: dict[str, StageMetrics]
    table: pa.Table | None = None
    elapsed_s: float = 0.0
    dead_letter_ids: list[str] = field(default_factory=list)
    unstored_dead: list[tuple[str, pa.Table, str]] = field(default_factory=list)
    resumed_batches: int = 0

    @property
    def rows_delivered(self) -> int:
        """Rows that reached the sink."""
        return self.metrics["sink"].rows_in if "sink" in self.metrics else 0

    def to_arrow(self) -> pa.Table:
        """The collected output as a ``pyarrow.Table`` (``table`` itself, not a copy);
        ``ResultNotCollectedError`` when the sink was not a ``CollectSink``."""
        if self.table is None:
            raise ResultNotCollectedError(
                f"this pipeline run ({self.status}) collected no table: only a CollectSink keeps its rows in the "
                "result; read the rows where its sink wrote them (e.g. ParquetSink.read())")
        return self.table

    def to_pandas(self) -> Any:
        """The collected output as a ``pandas.DataFrame`` (``engine.io.convert.to_pandas``:
        numeric columns without nulls in one chunk are views of the Arrow data, other
        columns are copied); ``MissingDependencyError`` without pandas."""
        return to_pandas(self.to_arrow(), "PipelineResult.to_pandas()")

    def to_polars(self) -> Any:
        """The collected output as a ``polars.DataFrame`` (``engine.io.convert.to_polars``:
        the buffers of numeric, boolean and temporal columns are adopted, strings are
        converted);
        ``MissingDependencyError`` without polars."""
        return to_polars(self.to_arrow(), "PipelineResult.to_polars()")

    def to_ray_dataset(self) -> Any:
        """The collected output as a ``ray.data.Dataset`` (``ray.data.from_arrow``: the table
        is put into Ray's object store once, a copy into shared memory).  Needs
        ``engine.connect()`` first (``NotConnectedError``); stops the engine's idle
        MapReduce workers, whose CPUs Ray Data's tasks need."""
        return ray_dataset_from_table(self.to_arrow(), "PipelineResult.to_ray_dataset()")
