"""Ready-made vectorized reduce/combine functions built on Arrow's hash group-by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import pyarrow as pa

_COMBINABLE = {"sum": "sum", "count": "sum", "min": "min", "max": "max"}


@dataclass(frozen=True)
class GroupByAggregate:
    """``GroupByAggregate(["word"], {"count": "sum"})`` is a reduce (or combine) function
    that groups rows by the key columns and aggregates each named column in place, so the
    output has the same column names as the input: ``word, count``.

    Supported aggregations: ``sum``, ``min``, ``max``, ``count`` (non-null values) and
    ``mean`` (reduce only: a mean of means is not a mean, so it cannot be a combiner).
    """

    keys: tuple[str, ...]
    aggregations: tuple[tuple[str, str], ...]

    def __init__(self, keys: str | Sequence[str], aggregations: Mapping[str, str]) -> None:
        object.__setattr__(self, "keys", (keys,) if isinstance(keys, str) else tuple(keys))
        object.__setattr__(self, "aggregations", tuple(aggregations.items()))
        for column, function in self.aggregations:
            if function not in ("sum", "min", "max", "count", "mean"):
                raise ValueError(f"unsupported aggregation {function!r} for column {column!r}")

    def __call__(self, table: pa.Table) -> pa.Table:
        """Aggregate ``table`` by the keys; key columns first, then the aggregated columns."""
        grouped = table.group_by(list(self.keys), use_threads=False).aggregate(
            [(column, function) for column, function in self.aggregations])
        columns = {key: grouped.column(key) for key in self.keys}
        for column, function in self.aggregations:
            values = grouped.column(f"{column}_{function}")
            source_type = table.schema.field(column).type
            if function in ("sum", "min", "max") and values.type != source_type:
                values = values.cast(source_type)
            columns[column] = values
        return pa.table(columns)

    def as_combiner(self) -> "GroupByAggregate":
        """The map-side combiner for this aggregation (``count`` becomes ``sum`` of counts)."""
        if any(function == "mean" for _, function in self.aggregations):
            raise ValueError("mean cannot be combined map-side")
        return GroupByAggregate(self.keys, {c: _COMBINABLE[f] for c, f in self.aggregations})
