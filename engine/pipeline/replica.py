"""The replica actor of a stage: applies the stage's filter to batches passed by reference.

One call per batch.  The call returns ``1 + parts`` objects: a small ``meta`` dict
(counters, dead rows) that the coordinator reads, then the output split into ``parts``
tables by the next stage's key (``None`` for an empty part).  The outputs stay in the
object store; only their references travel through the coordinator.
"""

from __future__ import annotations

import time

import pyarrow as pa
import ray

from engine.pipeline.batches import split_by_key
from engine.pipeline.filtering import apply_filter
from engine.pipeline.spec import FilterFn
from engine.reliability import RetryPolicy


def process_batch(
    stage_id: str, fn: FilterFn, retry: RetryPolicy, batch: pa.Table, next_key: str | None, parts: int
) -> tuple[dict[str, object], list[pa.Table | None]]:
    """Filter one batch and split its output for the next stage; returns ``(meta, parts)``."""
    started = time.perf_counter()
    outcome = apply_filter(fn, batch, retry, stage_id)
    output = outcome.table
    if output is None:
        pieces: list[pa.Table | None] = [None] * parts
    elif next_key is not None and parts > 1:
        pieces = [piece if piece.num_rows else None for piece in split_by_key(output, next_key, parts)]
    else:
        pieces = [output] + [None] * (parts - 1)
    meta: dict[str, object] = {
        "rows_in": batch.num_rows,
        "rows_out": 0 if output is None else output.num_rows,
        "part_rows": [0 if piece is None else piece.num_rows for piece in pieces],
        "errors": outcome.errors,
        "dead": [(dead.rows, dead.error, dead.attempts) for dead in outcome.dead],
        "busy_s": time.perf_counter() - started,
    }
    return meta, pieces


@ray.remote(max_restarts=0, max_concurrency=1)
class StageReplica:
    """One replica of a stage; calls run one at a time, in the order they were submitted."""

    def __init__(self, stage_id: str, fn: FilterFn, retry: RetryPolicy) -> None:
        self.stage_id = stage_id
        self.fn = fn
        self.retry = retry

    def ready(self) -> bool:
        """True once the actor is up (used to wait for start-up)."""
        return True

    def process(self, batch: pa.Table, next_key: str | None, parts: int) -> tuple[object, ...]:
        """Filter ``batch``; returns ``(meta, part_0, ..., part_{parts-1})``."""
        meta, pieces = process_batch(self.stage_id, self.fn, self.retry, batch, next_key, parts)
        return (meta, *pieces)
