"""Small Arrow table helpers shared by every pattern: normalizing, concatenating, sorting."""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa


def as_table(batch: object, where: str) -> pa.Table:
    """Return ``batch`` as a ``pa.Table``; a RecordBatch is wrapped, anything else is refused.

    ``where`` names the producer (a stage id, a source) for the error message.
    """
    if isinstance(batch, pa.Table):
        return batch
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    raise TypeError(
        f"{where} produced {type(batch).__name__}; a filter must return a pyarrow Table or RecordBatch"
    )


def concat(tables: Sequence[pa.Table], schema: pa.Schema | None = None) -> pa.Table:
    """Concatenate tables, unifying schemas; an empty list gives an empty table of ``schema``."""
    tables = [t for t in tables if t is not None]
    if not tables:
        if schema is None:
            return pa.table({})
        return schema.empty_table()
    return pa.concat_tables(tables, promote_options="permissive")


def sort_by_keys(table: pa.Table, keys: Sequence[str]) -> pa.Table:
    """Rows ordered by ``keys`` ascending (nulls last)."""
    if table.num_rows <= 1:
        return table
    return table.sort_by([(k, "ascending") for k in keys])
