"""The event contract of a Lambda deployment: what an acceptable event is.

An :class:`EventContract` names the Arrow schema of valid events, the function that
splits an ingest batch into valid rows and rejected rows (each with a
``reject_reason``), and optionally the id column used to drop re-sent events within a
horizon and the event-time column that horizon is measured on.

:func:`split_batch` is the one place ingest calls the contract: it checks what the
validation function returns, so a contract bug is a clear error naming the contract,
never a silently malformed log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.common.bad_records import call_isolating_failures
from engine.common.retry import RetryPolicy
from engine.errors import SpecError

REASON = "reject_reason"
OFFSET = "offset"
_NO_RETRY = RetryPolicy(max_attempts=1)

Validation = Callable[[pa.Table], "tuple[pa.Table, pa.Table]"]


@dataclass(frozen=True)
class EventContract:
    """The events a deployment accepts.

    - ``schema``: the Arrow schema of valid events (what the master log stores, after an
      ``offset`` column the log assigns).
    - ``validate(batch) -> (valid, rejected)``: ``valid`` has exactly ``schema``'s columns
      (it is cast to ``schema``); ``rejected`` holds the other rows, in any schema that
      has a string ``reject_reason`` column, one reason per row.  Row order is kept.
      ``None`` uses :func:`require_fields`: cast the batch to ``schema`` and reject rows
      with a null in a non-nullable field (``"missing <field>"``).
    - ``id_column``: events with the same id are stored once within the de-duplication
      horizon (needs ``time_column``).
    - ``time_column``: the event time (``timestamp[ms]`` or int64 milliseconds); the
      horizon is measured on it and the newest stored time is the default "now".
    - ``allow_non_finite``: by default a row whose value in a floating-point column is
      NaN, inf or -inf is rejected (``"non-finite <field>"``, the first such field in
      schema order), after ``validate``; ``True`` stores such values as they are.
    """

    schema: pa.Schema
    validate: Validation | None = None
    id_column: str | None = None
    time_column: str | None = None
    allow_non_finite: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.schema, pa.Schema) or len(self.schema) == 0:
            raise SpecError(f"EventContract.schema must be a non-empty pyarrow Schema, got {self.schema!r}")
        if OFFSET in self.schema.names:
            raise SpecError(f"EventContract.schema may not have a column {OFFSET!r}: the master log adds it")
        if not isinstance(self.allow_non_finite, bool):
            raise SpecError(f"EventContract.allow_non_finite must be True or False, got {self.allow_non_finite!r}")
        if self.validate is not None and not callable(self.validate):
            raise SpecError(f"EventContract.validate must be callable or None, got {self.validate!r}")
        for role in ("id_column", "time_column"):
            name = getattr(self, role)
            if name is not None and name not in self.schema.names:
                raise SpecError(f"EventContract.{role} {name!r} is not a column of the schema {self.schema.names}")
        if self.id_column is not None and self.time_column is None:
            raise SpecError("EventContract.id_column needs a time_column: duplicates are dropped within a horizon "
                            "of event time")
        if self.time_column is not None:
            kind = self.schema.field(self.time_column).type
            if not (pa.types.is_int64(kind) or (pa.types.is_timestamp(kind) and kind.unit == "ms")):
                raise SpecError(f"EventContract.time_column {self.time_column!r} has type {kind}; "
                                f"use timestamp[ms] or int64 milliseconds")

    @property
    def log_schema(self) -> pa.Schema:
        """What the master log stores: ``offset`` (int64) and the contract's columns."""
        return pa.schema([pa.field(OFFSET, pa.int64())] + list(self.schema))


def cast_rows(column: pa.Array | pa.ChunkedArray, target: pa.DataType) -> tuple[pa.Array | pa.ChunkedArray,
                                                                                np.ndarray | None]:
    """``column`` cast to ``target`` row by row: ``(cast column, mask of the rows whose
    value could not be cast)``; those rows are null in the result, and the mask is
    ``None`` when every row cast.  One bad value never fails the others: the rows are
    isolated with the engine's one bisector.  Raises ``ValueError`` when the column's type
    cannot be cast to ``target`` at all."""
    try:
        return pc.cast(column, target), None
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise ValueError(f"of type {column.type} cannot be cast to {target}") from None
    except pa.ArrowInvalid:
        pass
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    isolated = call_isolating_failures(lambda piece: pc.cast(piece.column(0), target), pa.table({"value": column}),
                                       _NO_RETRY)
    bad = np.zeros(len(column), dtype=bool)
    for group in isolated.failed:
        bad[group.positions] = True
    return pc.cast(pc.if_else(pa.array(bad), pa.scalar(None, column.type), column), target), bad


def as_text(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Values as strings, so that any rejected value can be stored and shown."""
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        # Only rejected rows get here (invalid UTF-8, nested values): a loop is fine.
        return pa.array([None if value is None else value.decode("utf-8", "backslashreplace")
                         if isinstance(value, bytes) else str(value) for value in column.to_pylist()], pa.string())


def require_fields(schema: pa.Schema, batch: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The default validation: cast each column of ``batch`` to ``schema`` row by row and
    reject, with the first reason that applies in schema order, rows with a value that
    cannot be cast (``"invalid <field> (not <type>)"``) and rows with a null in a
    non-nullable field (``"missing <field>"``).  Rejected rows keep every field as text.
    A missing column, or a column whose type cannot be cast at all, raises ``ValueError``
    naming the column."""
    columns: dict[str, pa.Array | pa.ChunkedArray] = {}
    checks: list[tuple[pa.Array | pa.ChunkedArray, str]] = []
    for field in schema:
        if field.name not in batch.column_names:
            raise ValueError(f"event batch has no column {field.name!r} (columns: {batch.column_names})")
        try:
            columns[field.name], invalid = cast_rows(batch.column(field.name), field.type)
        except ValueError as error:
            raise ValueError(f"event batch column {field.name!r} {error}") from None
        if invalid is not None:
            checks.append((pa.array(invalid), f"invalid {field.name} (not {field.type})"))
        if not field.nullable:
            checks.append((pc.is_null(columns[field.name]), f"missing {field.name}"))
    reason = pa.nulls(batch.num_rows, pa.string())
    for mask, text in reversed(checks):  # the first failing check wins
        reason = pc.if_else(mask, pa.scalar(text), reason)
    rejected_mask = pc.is_valid(reason)
    table = pa.table(columns, schema=pa.schema([f.with_nullable(True) for f in schema]))
    text_schema = pa.schema([pa.field(f.name, pa.string()) for f in schema] + [pa.field(REASON, pa.string())])
    if not pc.any(rejected_mask).as_py():
        return table.cast(schema), text_schema.empty_table()
    valid = table.filter(pc.invert(rejected_mask)).cast(schema)
    source = batch.filter(rejected_mask)
    rejected = pa.table([as_text(source.column(f.name)) for f in schema] + [pc.filter(reason, rejected_mask)],
                        schema=text_schema)
    return valid, rejected


def merge_rejected(rejected: pa.Table, extra: pa.Table) -> pa.Table | None:
    """``rejected`` followed by the ``extra`` rejected rows, in the shape of ``rejected``
    when ``extra``'s columns fit it (cast; text columns take any value as text), else
    promoted permissively; ``None`` when the two cannot share one table."""
    if extra.num_rows == 0:
        return rejected
    if set(extra.column_names) <= set(rejected.column_names):
        try:
            columns = [pa.nulls(extra.num_rows, f.type) if f.name not in extra.column_names
                       else as_text(extra.column(f.name)) if pa.types.is_string(f.type)
                       else pc.cast(extra.column(f.name), f.type) for f in rejected.schema]
            return pa.concat_tables([rejected, pa.table(columns, schema=rejected.schema)])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass
    try:
        return pa.concat_tables([rejected, extra], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def non_finite_reasons(schema: pa.Schema, table: pa.Table) -> pa.Array | None:
    """Per row, ``"non-finite <field>"`` for the first floating-point field (schema order)
    whose value is NaN, inf or -inf, else null; ``None`` when no row has one."""
    reason = None
    for field in reversed(schema):  # applied last to first, so the first such field wins
        if not pa.types.is_floating(field.type):
            continue
        bad = pc.fill_null(pc.invert(pc.is_finite(table.column(field.name))), False)
        if pc.any(bad).as_py():
            reason = pc.if_else(bad, pa.scalar(f"non-finite {field.name}"),
                                reason if reason is not None else pa.nulls(table.num_rows, pa.string()))
    return reason.combine_chunks() if isinstance(reason, pa.ChunkedArray) else reason


def _reject_non_finite(schema: pa.Schema, valid: pa.Table, rejected: pa.Table) -> tuple[pa.Table, pa.Table]:
    reason = non_finite_reasons(schema, valid)
    if reason is None:
        return valid, rejected
    bad = pc.is_valid(reason)
    extra = valid.filter(bad).append_column(REASON, pc.filter(reason, bad))
    merged = merge_rejected(rejected, extra)
    if merged is None:  # the validation's rejected rows have their own shape: keep both as text
        merged = pa.concat_tables([pa.table({name: as_text(table.column(name)) for name in table.column_names})
                                   for table in (rejected, extra)], promote_options="permissive")
    return valid.filter(pc.invert(bad)), merged


def split_batch(contract: EventContract, batch: pa.Table | pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
    """Run the contract's validation on ``batch``: (valid rows as ``contract.schema``,
    rejected rows with ``reject_reason``; rows with a non-finite float value are rejected
    unless ``contract.allow_non_finite``).  Raises ``ValueError`` for a batch that is not
    Arrow, ``SpecError`` when the validation function breaks its contract."""
    valid, rejected = _validate(contract, batch)
    if contract.allow_non_finite:
        return valid, rejected
    return _reject_non_finite(contract.schema, valid, rejected)


def _validate(contract: EventContract, batch: pa.Table | pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if not isinstance(batch, pa.Table):
        raise ValueError(f"ingest expects a pyarrow Table or RecordBatch, got {type(batch).__name__}")
    if contract.validate is None:
        return require_fields(contract.schema, batch)
    result = contract.validate(batch)
    if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(t, pa.Table) for t in result)):
        raise SpecError(f"EventContract.validate must return (valid, rejected) pyarrow Tables, got {type(result)}")
    valid, rejected = result
    if valid.schema.names != contract.schema.names:
        raise SpecError(f"EventContract.validate returned valid columns {valid.schema.names}, "
                        f"expected {contract.schema.names}")
    if valid.schema != contract.schema:
        valid = valid.cast(contract.schema)
    if REASON not in rejected.column_names or not pa.types.is_string(rejected.schema.field(REASON).type):
        raise SpecError(f"EventContract.validate returned rejected rows without a string {REASON!r} column")
    if valid.num_rows + rejected.num_rows != batch.num_rows:
        raise SpecError(f"EventContract.validate split {batch.num_rows} rows into {valid.num_rows} valid and "
                        f"{rejected.num_rows} rejected")
    return valid, rejected
