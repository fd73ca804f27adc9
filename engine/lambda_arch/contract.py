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

import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import SpecError

REASON = "reject_reason"
OFFSET = "offset"

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
    """

    schema: pa.Schema
    validate: Validation | None = None
    id_column: str | None = None
    time_column: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.schema, pa.Schema) or len(self.schema) == 0:
            raise SpecError(f"EventContract.schema must be a non-empty pyarrow Schema, got {self.schema!r}")
        if OFFSET in self.schema.names:
            raise SpecError(f"EventContract.schema may not have a column {OFFSET!r}: the master log adds it")
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


def require_fields(schema: pa.Schema, batch: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The default validation: cast ``batch`` to ``schema`` (a missing column or a bad
    cast raises ``ValueError`` naming the column) and reject rows with a null in a
    non-nullable field, with reason ``"missing <field>"`` (the first such field)."""
    columns = {}
    for field in schema:
        if field.name not in batch.column_names:
            raise ValueError(f"event batch has no column {field.name!r} (columns: {batch.column_names})")
        try:
            columns[field.name] = pc.cast(batch.column(field.name), field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ValueError(f"event batch column {field.name!r} of type {batch.column(field.name).type} "
                             f"cannot be cast to {field.type}: {error}") from None
    reason = pa.nulls(batch.num_rows, pa.string())
    for field in reversed([f for f in schema if not f.nullable]):  # the first failing field wins
        reason = pc.if_else(pc.is_null(columns[field.name]), pa.scalar(f"missing {field.name}"), reason)
    rejected_mask = pc.is_valid(reason)
    table = pa.table({name: column for name, column in columns.items()},
                     schema=pa.schema([f.with_nullable(True) for f in schema]))
    if not pc.any(rejected_mask).as_py():
        return table.cast(schema), pa.table({**columns, REASON: reason}).slice(0, 0)
    valid = table.filter(pc.invert(rejected_mask)).cast(schema)
    rejected = table.filter(rejected_mask).append_column(REASON, pc.filter(reason, rejected_mask))
    return valid, rejected


def split_batch(contract: EventContract, batch: pa.Table | pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
    """Run the contract's validation on ``batch``: (valid rows as ``contract.schema``,
    rejected rows with ``reject_reason``).  Raises ``ValueError`` for a batch that is not
    Arrow, ``SpecError`` when the validation function breaks its contract."""
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
