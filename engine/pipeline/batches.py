"""Splitting a batch by key for a keyed stage: the engine's one stable hash, per row.

Keys are routed with ``engine.common.hashing`` (identical in every process), so a key's
rows go to the same replica slot wherever the split happens: in the flow core for the
first stage, inside the previous stage's replica otherwise.
"""

from __future__ import annotations

import pyarrow as pa

from engine.common.hashing import hash_partition


def split_by_key(table: pa.Table, key: str, parts: int) -> list[pa.Table]:
    """Split ``table`` into ``parts`` tables by key partition, keeping row order inside each."""
    if key not in table.column_names:
        raise KeyError(f"key column {key!r} is not in the batch (columns: {table.column_names})")
    return hash_partition(table, [key], parts)
