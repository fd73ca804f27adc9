"""Pure per-batch Arrow helpers for the pipeline: normalizing, stable key hashing, splitting.

Nothing here knows about stages, pipes or Ray.  Keys are routed with the engine's stable
vectorized hash (``engine.common.hashing``), identical in every process, so a key's rows go to the
same replica wherever the split happens.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from engine.common.tables import as_table  # noqa: F401  (re-exported for the pipeline modules)

from engine.common.hashing import hash_column, hash_partition, partition_ids


def key_partitions(table: pa.Table, key: str, parts: int) -> np.ndarray:
    """The partition (``hash(key) mod parts``) of every row: the engine's one stable hash."""
    if key not in table.column_names:
        raise KeyError(f"key column {key!r} is not in the batch (columns: {table.column_names})")
    return partition_ids(table, [key], parts)


def split_by_key(table: pa.Table, key: str, parts: int) -> list[pa.Table]:
    """Split ``table`` into ``parts`` tables by key partition, keeping row order inside each."""
    if key not in table.column_names:
        raise KeyError(f"key column {key!r} is not in the batch (columns: {table.column_names})")
    return hash_partition(table, [key], parts)


def concat(tables: list[pa.Table]) -> pa.Table | None:
    """Concatenate tables of one schema (None for an empty list); schemas are unified."""
    if not tables:
        return None
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="default")
