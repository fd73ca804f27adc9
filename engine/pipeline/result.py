"""Per-stage metrics and the result of a pipeline run."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa


@dataclass
class StageMetrics:
    """Counters of one stage (or of the source, id ``"source"``, or the sink, id ``"sink"``).

    ``pipe_depth`` is the batches now in the stage's input pipe (waiting, being processed,
    or done and waiting for room downstream); ``max_pipe_depth`` the most ever seen.
    ``errors`` counts failed filter calls (each failed attempt of a batch or of a piece
    of it; for the sink, writes that failed after their retries); ``dead_letters`` the rows sent to the dead-letter store; ``busy_s`` the time
    replicas spent inside the filter; ``replica_restarts`` replicas replaced after dying.
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
    ``unstored_dead`` holds ``(step, rows, error)`` when no store directory was set.
    """

    status: str
    metrics: dict[str, StageMetrics]
    table: pa.Table | None = None
    elapsed_s: float = 0.0
    dead_letter_ids: list[str] = field(default_factory=list)
    unstored_dead: list[tuple[str, pa.Table, str]] = field(default_factory=list)

    @property
    def rows_delivered(self) -> int:
        """Rows that reached the sink."""
        return self.metrics["sink"].rows_in if "sink" in self.metrics else 0
