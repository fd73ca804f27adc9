"""Applying one stage's filter to one batch, through the engine's one bad-record path.

The happy path is one call of the filter on the whole batch.  Transient failures are
retried per the stage's ``RetryPolicy``; a batch that still fails is bisected
(``engine.common.bad_records``), so the good rows of the batch go on and only the rows
that fail on their own become dead rows, grouped by error.  The same function runs
inline (local executor) and inside replica actors (Ray executor).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa

from engine.common.bad_records import ErrorDescription, call_isolating_failures
from engine.common.retry import RetryPolicy
from engine.common.tables import as_table, concat
from engine.pipeline.batches import split_by_key
from engine.pipeline.spec import FilterFn


@dataclass
class DeadRows:
    """Rows of one batch that failed the filter with the same error, after retries."""

    rows: pa.Table
    error: ErrorDescription
    attempts: int


@dataclass
class FilterOutcome:
    """The filter's output rows (``None`` when nothing came out), its dead rows and how many
    filter calls raised (failed attempts, counting retries and bisection probes)."""

    table: pa.Table | None
    dead: list[DeadRows] = field(default_factory=list)
    errors: int = 0


def apply_filter(fn: FilterFn, batch: pa.Table, retry: RetryPolicy, stage_id: str, strict: bool = False) -> FilterOutcome:
    """Run ``fn`` over ``batch`` under ``retry``; isolate failing rows unless ``strict``.

    ``strict=True`` (used when replaying dead letters) raises the filter's error instead.
    """
    if batch.num_rows == 0:
        return FilterOutcome(table=None)

    def checked(piece: pa.Table) -> pa.Table:
        return as_table(fn(piece), f"stage {stage_id!r}")

    isolated = call_isolating_failures(checked, batch, retry, strict=strict)
    outputs = [table for table in isolated.outputs if table.num_rows]
    return FilterOutcome(
        table=concat(outputs) if outputs else None,
        dead=[DeadRows(group.rows, group.error, group.attempts) for group in isolated.failed],
        errors=isolated.failed_calls,
    )


def process_batch(
    stage_id: str, fn: FilterFn, retry: RetryPolicy, batch: pa.Table, next_key: str | None, parts: int
) -> tuple[dict[str, object], list[pa.Table | None]]:
    """Filter one batch and split its output for the next stage: ``(meta, parts)``.

    ``meta`` is what the flow core reads of a call: ``rows_in``, ``rows_out``,
    ``part_rows`` (rows per part), ``errors`` (failed filter calls), ``dead`` (groups of
    ``(rows, error, attempts)``) and ``busy_s``; empty parts are ``None``.  Inline this
    runs in the driver, on Ray inside a replica actor.
    """
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
