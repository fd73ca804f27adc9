"""Applying one stage's filter to one batch, through the engine's one bad-record path.

The happy path is one call of the filter on the whole batch (of each stage of a link, in
turn, when stages are chained).  Transient failures are
retried per the stage's ``RetryPolicy``; a batch that still fails is bisected
(``engine.common.bad_records``), so the good rows of the batch go on and only the rows
that fail on their own become dead rows, grouped by error.  The same function runs
inline (local executor) and inside replica actors (Ray executor).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import pyarrow as pa

from engine.common.bad_records import ErrorDescription, call_isolating_failures, describe_error
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


@dataclass(frozen=True)
class LinkStage:
    """What a call needs of one stage of a link: its id, filter and retry policy."""

    id: str
    fn: FilterFn
    retry: RetryPolicy


def _counts(stage_id: str, batch: pa.Table, outcome: FilterOutcome, started: float) -> dict[str, object]:
    return {
        "stage": stage_id,
        "ran": True,
        "rows_in": batch.num_rows,
        "rows_out": 0 if outcome.table is None else outcome.table.num_rows,
        "errors": outcome.errors,
        "dead": [(dead.rows, dead.error, dead.attempts) for dead in outcome.dead],
        "busy_s": time.perf_counter() - started,
    }


def process_batch(
    link: Sequence[LinkStage], batch: pa.Table, next_key: str | None, parts: int
) -> tuple[dict[str, object], list[pa.Table | None]]:
    """Filter one batch through a link's stages in turn and split the last output for the
    next link: ``(meta, parts)``.

    ``meta`` is what the flow core reads of a call: the first stage's ``rows_in``,
    ``rows_out``, ``errors`` (failed filter calls), ``dead`` (groups of ``(rows, error,
    attempts)``) and ``busy_s``; the same counters of each later stage in ``members``
    (``ran`` is False for a stage that got no rows); ``part_rows`` (rows per part).  Empty
    parts are ``None``.  Inline this runs in the driver, on Ray inside a replica actor.
    An error raised in a later stage names that stage.
    """
    counts: list[dict[str, object]] = []
    output: pa.Table | None = batch
    for position, stage in enumerate(link):
        if output is None:
            counts.append({"stage": stage.id, "ran": False})
            continue
        started = time.perf_counter()
        try:
            outcome = apply_filter(stage.fn, output, stage.retry, stage.id)
        except Exception as error:
            if position == 0:
                raise
            raise ChainedStageError(f"in stage {stage.id!r} (chained after {link[0].id!r}): "
                                    f"{describe_error(error).one_line()}") from error
        counts.append(_counts(stage.id, output, outcome, started))
        output = outcome.table
    if output is None:
        pieces: list[pa.Table | None] = [None] * parts
    elif next_key is not None and parts > 1:
        pieces = [piece if piece.num_rows else None for piece in split_by_key(output, next_key, parts)]
    else:
        pieces = [output] + [None] * (parts - 1)
    meta = dict(counts[0])
    meta["members"] = counts[1:]
    meta["part_rows"] = [0 if piece is None else piece.num_rows for piece in pieces]
    return meta, pieces


class ChainedStageError(RuntimeError):
    """A stage chained after another raised (the message names the stage)."""
