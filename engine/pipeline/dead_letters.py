"""Dead rows of a pipeline: recording them in the dead-letter store, and replaying them.

Recording happens in the process that runs the pipeline (the driver for Ray runs),
once per completed filter call, so a resent batch never records its dead rows twice.
Bad input records a source met (a text line that is not UTF-8) become letters of step
``"read"``, with their file and offsets.
Replay feeds each stored letter of a stage through the (fixed) stage and the stages
after it into the pipeline's sink (through ``delivery.SinkDriver``, like a run); the
store marks a letter replayed only after that succeeded.  Into a sink with stable
commits (``ParquetSink``) a letter's rows are committed as the batch
``replay_batch_name(letter_id)`` and a replay that finds that batch committed only marks
the letter, so replay is exactly-once even when a replayer dies between the sink's
commit and the marker; rows failing a later stage are keyed by the letter, so they become
one dead letter however often that happens.  Into other sinks it is at-least-once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

import pyarrow as pa

from engine.common.bad_records import ErrorDescription
from engine.common.dead_letters import DeadLetterStore, ReplayReport, replay_batch_name
from engine.io.sources import SourceBatch
from engine.pipeline.delivery import SinkDriver
from engine.pipeline.filtering import FilterOutcome, apply_filter
from engine.pipeline.spec import FilterFn, Pipeline

READ_STEP = "read"


def read_dead_group(batch: SourceBatch) -> tuple[tuple[pa.Table, ErrorDescription, int], dict[str, object]]:
    """The bad records of one source batch as one dead-row group (their raw bytes in a
    binary ``line`` column) and its origin: file, byte offsets and reasons."""
    bad = batch.bad_records
    rows = pa.table({"line": pa.array([record.data for record in bad], pa.binary())})
    first = bad[0].reason
    message = first if len(bad) == 1 else f"{len(bad)} records could not be read; first: {first}"
    origin: dict[str, object] = {"file": batch.location, "offsets": [record.offset for record in bad],
                                 "reasons": [record.reason for record in bad]}
    return (rows, ErrorDescription("UnicodeDecodeError", message), 1), origin


@dataclass
class DeadLetterRecorder:
    """Writes dead rows to the store of ``directory``; without one keeps them in memory."""

    directory: str | None
    letter_ids: list[str] = field(default_factory=list)
    unstored: list[tuple[str, pa.Table, str]] = field(default_factory=list)
    _store: DeadLetterStore | None = None

    def record(self, stage_id: str, rows: pa.Table, error: ErrorDescription, attempts: int,
               source: Mapping[str, object], key: str | None = None) -> None:
        """Keep one group of dead rows of ``stage_id`` with its error and origin (a ``key``
        makes recording the same group again keep one letter)."""
        if self.directory is None:
            self.unstored.append((stage_id, rows, error.one_line()))
            return
        if self._store is None:
            self._store = DeadLetterStore(self.directory)
        self.letter_ids.append(self._store.add(stage_id, rows, error, source=source, attempts=attempts,
                                               pattern="pipeline", key=key))

    def record_outcome(self, stage_id: str, dead: list[tuple[pa.Table, ErrorDescription, int]],
                       source: Mapping[str, object], key: str | None = None) -> int:
        """Record every ``(rows, error, attempts)`` group (keyed ``<key>:<i>`` with a ``key``);
        returns the number of dead rows."""
        for i, (rows, error, attempts) in enumerate(dead):
            self.record(stage_id, rows, error, attempts, source, None if key is None else f"{key}:{i}")
        return sum(rows.num_rows for rows, _, _ in dead)


def outcome_dead(outcome: FilterOutcome) -> list[tuple[pa.Table, ErrorDescription, int]]:
    """The dead rows of an outcome as plain ``(rows, error, attempts)`` tuples."""
    return [(dead.rows, dead.error, dead.attempts) for dead in outcome.dead]


@dataclass
class ReplayResult:
    """The store's replay report and, for a ``CollectSink``, the rows the replay delivered."""

    report: ReplayReport
    table: pa.Table | None


def replay_dead_letters(pipeline: Pipeline, stage_id: str, fixed_fn: FilterFn | None = None) -> ReplayResult:
    """Replay the stored dead letters of ``stage_id`` through ``fixed_fn`` (default: the
    stage's own filter) and the later stages, into the pipeline's sink, inline.

    A letter whose rows still fail the replayed stage stays in the store (reported in
    ``report.failed_letters``); rows failing a *later* stage become new dead letters of
    that stage.  Into a ``ParquetSink`` (opened to add to what it holds) this is
    exactly-once across crashes and repeated replays (see the module docstring); into
    other sinks at-least-once.  Needs ``pipeline.options.dead_letter_dir``.
    """
    directory = pipeline.options.dead_letter_dir
    if directory is None:
        raise ValueError("replay_dead_letters needs a pipeline with options.dead_letter_dir set")
    index = [stage.id for stage in pipeline.stages].index(pipeline.stage(stage_id).id)
    stages = list(pipeline.stages[index:])
    if fixed_fn is not None:
        stages[0] = replace(stages[0], fn=fixed_fn)
    recorder = DeadLetterRecorder(directory)
    stable = pipeline.sink.stable_commits
    writer = SinkDriver(pipeline.sink, pipeline.options.sink_retry, pipeline.options.sink_breaker)
    writer.open(resume=stable)
    done = writer.committed()

    def deliver(letter_id: str, rows: pa.Table) -> None:
        batch: pa.Table | None = apply_filter(stages[0].fn, rows, stages[0].retry, stages[0].id, strict=True).table
        for stage in stages[1:]:
            if batch is None:
                return
            outcome = apply_filter(stage.fn, batch, stage.retry, stage.id)
            recorder.record_outcome(stage.id, outcome_dead(outcome), {"replay_of": stage_id, "letter": letter_id},
                                    key=f"replay:{letter_id}")
            batch = outcome.table
        if batch is not None and batch.num_rows:
            writer.write(replay_batch_name(letter_id), batch)

    # Without stable commits nothing is ever found committed: at-least-once.
    report = DeadLetterStore(directory).replay_exactly_once(
        stage_id, deliver, lambda letter_id: replay_batch_name(letter_id) in done)
    return ReplayResult(report=report, table=writer.close())
