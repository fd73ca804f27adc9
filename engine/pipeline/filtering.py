"""Applying one stage's filter to one batch: retries, then isolating the rows that fail.

The happy path is one call of the filter on the whole batch.  Only when a batch still
fails after its retries is it bisected, recursively, so the good rows of the batch go on
and only the rows that fail on their own become dead rows (grouped by error message).
The same function runs inline (local executor) and inside replica actors (Ray executor).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from engine.pipeline.batches import as_table, concat
from engine.pipeline.spec import FilterFn
from engine.common.retry import RetryPolicy


@dataclass
class DeadRows:
    """Rows of one batch that failed the filter with the same error, after retries."""

    rows: pa.Table
    error: str
    attempts: int


@dataclass
class FilterOutcome:
    """The filter's output rows (``None`` when nothing came out), its dead rows and how many
    filter calls raised (failed attempts, counting retries and bisection probes)."""

    table: pa.Table | None
    dead: list[DeadRows] = field(default_factory=list)
    errors: int = 0


def describe_error(exc: BaseException) -> str:
    """``Type: message`` of an exception, the way dead letters record it."""
    return f"{type(exc).__name__}: {exc}"


class _Counted:
    """Wraps the filter to count the calls that raise and the attempts on the last piece."""

    def __init__(self, fn: FilterFn, stage_id: str) -> None:
        self.fn = fn
        self.stage_id = stage_id
        self.errors = 0
        self.attempts = 0

    def __call__(self, piece: pa.Table) -> pa.Table:
        self.attempts += 1
        try:
            return as_table(self.fn(piece), f"stage {self.stage_id!r}")
        except Exception:
            self.errors += 1
            raise


def apply_filter(fn: FilterFn, batch: pa.Table, retry: RetryPolicy, stage_id: str, strict: bool = False) -> FilterOutcome:
    """Run ``fn`` over ``batch`` under ``retry``; isolate failing rows unless ``strict``.

    ``strict=True`` (used when replaying dead letters) raises the filter's error instead.
    """
    counted = _Counted(fn, stage_id)
    outputs: list[pa.Table] = []
    dead: dict[str, DeadRows] = {}

    def attempt(piece: pa.Table) -> None:
        counted.attempts = 0
        try:
            outputs.append(retry.call(counted, piece))
            return
        except Exception as exc:
            if strict:
                raise
            if piece.num_rows > 1:
                middle = piece.num_rows // 2
                attempt(piece.slice(0, middle))
                attempt(piece.slice(middle))
                return
            message = describe_error(exc)
            if message in dead:
                dead[message].rows = concat([dead[message].rows, piece])  # type: ignore[assignment]
                dead[message].attempts = max(dead[message].attempts, counted.attempts)
            else:
                dead[message] = DeadRows(rows=piece, error=message, attempts=counted.attempts)

    if batch.num_rows == 0:
        return FilterOutcome(table=None)
    attempt(batch)
    non_empty = [table for table in outputs if table.num_rows] or outputs[:1]
    table = concat(non_empty)
    return FilterOutcome(
        table=table if table is not None and table.num_rows else None,
        dead=list(dead.values()),
        errors=counted.errors,
    )
