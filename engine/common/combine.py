"""The combine contract: create / add / merge / finalize (after Beam's ``CombineFn``), over Arrow.

One shape serves MapReduce combiners and reducers, scatter-gather aggregators and the
Lambda architecture's batch/speed merge:

- ``create()`` an empty accumulator;
- ``add(accumulator, rows)`` the accumulator with a table of input rows added;
- ``merge(accumulators)`` one accumulator holding all of them;
- ``finalize(accumulator)`` the answer.

Calling a combiner on one table, ``fn(rows)``, is ``finalize(add(create(), rows))``, so
any ``CombineFn`` is also a plain batch function (a MapReduce ``combine`` or ``reduce``).

``KeyedCombineFn``s group by key columns.  Their accumulators are lists of *partial
tables* (the key columns and partial aggregates), so a map task can ship its
accumulator through the shuffle as one table (``partial``) and a reducer can merge the
partial tables of every map task (``merge`` of ``[table]`` accumulators).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from engine.common.packed_keys import distinct_keys
from engine.errors import SpecError

AGGREGATIONS = ("sum", "min", "max", "count", "mean")
# How partials of each aggregation merge: counts of values add up, extremes stay extremes.
_MERGE = {"sum": "sum", "min": "min", "max": "max", "count": "sum"}


class CombineFn(abc.ABC):
    """Beam's combine contract; see the module docstring."""

    @abc.abstractmethod
    def create(self) -> Any:
        """An empty accumulator."""

    @abc.abstractmethod
    def add(self, accumulator: Any, rows: Any) -> Any:
        """The accumulator with ``rows`` added (it may be changed in place and returned)."""

    @abc.abstractmethod
    def merge(self, accumulators: Sequence[Any]) -> Any:
        """One accumulator holding everything in ``accumulators``."""

    @abc.abstractmethod
    def finalize(self, accumulator: Any) -> Any:
        """The answer for an accumulator."""

    def __call__(self, rows: Any) -> Any:
        """Combine one input at once: ``finalize(add(create(), rows))``."""
        return self.finalize(self.add(self.create(), rows))


class KeyedCombineFn(CombineFn):
    """A combiner grouping rows by ``keys``; accumulators are lists of partial tables."""

    keys: tuple[str, ...]

    def create(self) -> list[pa.Table]:
        return []

    def merge(self, accumulators: Sequence[list[pa.Table]]) -> list[pa.Table]:
        merged = [table for accumulator in accumulators for table in accumulator]
        return [self.merge_partials(merged)] if len(merged) > 1 else merged

    def partial(self, accumulator: list[pa.Table]) -> pa.Table:
        """The accumulator as one partial table (what a map task shuffles by key)."""
        return self.merge_partials(accumulator)

    @abc.abstractmethod
    def to_partial(self, rows: pa.Table) -> pa.Table:
        """Input rows reduced to one partial row per key."""

    @abc.abstractmethod
    def merge_partials(self, partials: Sequence[pa.Table]) -> pa.Table:
        """Partial tables merged into one partial row per key."""

    def add(self, accumulator: list[pa.Table], rows: pa.Table) -> list[pa.Table]:
        if rows.num_rows or not accumulator:  # an empty first table still gives the column types
            accumulator.append(self.to_partial(rows))
        return accumulator


# Below this many rows Arrow's group-by is as fast, and the compiled kernels are not loaded.
_COMPILED_GROUP_BY_ROWS = 100_000


def _group_by(table: pa.Table, keys: Sequence[str], specs: list[tuple[str, str]]) -> pa.Table:
    """``table.group_by(keys).aggregate(specs)``; for large tables with integer keys, the
    distinct keys (no ``specs``) by one sort of packed keys (``engine.common.packed_keys``:
    ascending, not first-seen order) and aggregations by the compiled kernel
    (``engine.kernels.int_groupby``); the rest through Arrow."""
    if table.num_rows >= _COMPILED_GROUP_BY_ROWS and not specs:  # distinct keys: one sort of packed keys
        distinct = distinct_keys(table, keys)
        if distinct is not None:
            return distinct
    if table.num_rows >= _COMPILED_GROUP_BY_ROWS:
        from engine.kernels.int_groupby import group_by_int_keys

        grouped = group_by_int_keys(table, keys, specs)
        if grouped is not None:
            return grouped
    return arrow_group_by(table, keys, specs)


def arrow_group_by(table: pa.Table, keys: Sequence[str], specs: list[tuple[str, str]]) -> pa.Table:
    """``table.group_by(keys, use_threads=False).aggregate(specs)``, the same Acero plan built
    directly: Arrow's ``group_by`` imports ``pyarrow.acero``, which imports
    ``pyarrow.dataset`` and pandas (0.4 s in each process on its first group-by)."""
    try:
        from pyarrow._acero import AggregateNodeOptions, Declaration, TableSourceNodeOptions
    except ImportError:  # another pyarrow layout: the public path
        return table.group_by(list(keys), use_threads=False).aggregate(specs)
    if not keys:
        return table.group_by([], use_threads=False).aggregate(specs)
    aggregates = [([column], f"hash_{func}", None, f"{column}_{func}") for column, func in specs]
    plan = Declaration.from_sequence([Declaration("table_source", TableSourceNodeOptions(table)),
                                      Declaration("aggregate", AggregateNodeOptions(aggregates, keys=list(keys)))])
    return plan.to_table(use_threads=False)


@dataclass(frozen=True)
class GroupByAggregate(KeyedCombineFn):
    """Group rows by the key columns and aggregate named columns in place, so the output
    has the input's column names: ``GroupByAggregate("word", {"count": "sum"})`` turns
    ``(word, count)`` rows into one ``(word, count)`` row per word.

    Aggregations: ``sum``, ``min``, ``max`` (keep the column's type), ``count`` (non-null
    values, int64) and ``mean`` (float64).  With no aggregations the result is the distinct
    key rows.  ``schema``, if given, is the type of the finalized table.  As a plain
    function (``agg(table)``) it aggregates one table; through the combine contract
    (``add``/``merge``/``finalize``) partials of counts and means merge correctly too.
    """

    keys: tuple[str, ...]
    aggregations: tuple[tuple[str, str], ...] = ()
    schema: pa.Schema | None = None

    def __init__(self, keys: str | Sequence[str], aggregations: Mapping[str, str] | None = None,
                 schema: pa.Schema | None = None) -> None:
        object.__setattr__(self, "keys", (keys,) if isinstance(keys, str) else tuple(keys))
        object.__setattr__(self, "aggregations", tuple((aggregations or {}).items()))
        object.__setattr__(self, "schema", schema)
        if not self.keys:
            raise SpecError("GroupByAggregate needs at least one key column")
        for column, function in self.aggregations:
            if function not in AGGREGATIONS:
                raise SpecError(f"unsupported aggregation {function!r} for column {column!r}; "
                                f"choose one of {', '.join(AGGREGATIONS)}")
            if column in self.keys:
                raise SpecError(f"column {column!r} is both a key and an aggregated column")

    # -- partial form: one row per key; a mean is kept as <col>__sum and <col>__count ------

    def _partial_specs(self) -> list[tuple[str, str]]:
        specs = []
        for column, function in self.aggregations:
            if function == "mean":
                specs += [(column, "sum"), (column, "count")]
            else:
                specs.append((column, function))
        return specs

    def to_partial(self, rows: pa.Table) -> pa.Table:
        grouped = _group_by(rows, self.keys, self._partial_specs())
        columns = {key: grouped.column(key) for key in self.keys}
        for column, function in self.aggregations:
            if function == "mean":
                columns[f"{column}__sum"] = pc.cast(grouped.column(f"{column}_sum"), pa.float64())
                columns[f"{column}__count"] = grouped.column(f"{column}_count")
            else:
                values = grouped.column(f"{column}_{function}")
                if function != "count" and values.type != rows.schema.field(column).type:
                    values = values.cast(rows.schema.field(column).type)
                columns[column] = values
        return pa.table(columns)

    def merge_partials(self, partials: Sequence[pa.Table]) -> pa.Table:
        if not partials:
            return self._empty_partial()
        table = partials[0] if len(partials) == 1 else pa.concat_tables(partials, promote_options="permissive")
        specs = []
        for column, function in self.aggregations:
            if function == "mean":
                specs += [(f"{column}__sum", "sum"), (f"{column}__count", "sum")]
            else:
                specs.append((column, _MERGE[function]))
        grouped = _group_by(table, self.keys, specs)
        columns = {key: grouped.column(key) for key in self.keys}
        for name, function in specs:
            values = grouped.column(f"{name}_{function}")
            if values.type != table.schema.field(name).type:
                values = values.cast(table.schema.field(name).type)
            columns[name] = values
        return pa.table(columns)

    def _empty_partial(self) -> pa.Table:
        def typed(name: str, default: pa.DataType) -> pa.Field:
            if self.schema is not None and name in self.schema.names:
                return self.schema.field(name)
            return pa.field(name, default)

        fields = [typed(key, pa.null()) for key in self.keys]
        for column, function in self.aggregations:
            if function == "mean":
                fields += [pa.field(f"{column}__sum", pa.float64()), pa.field(f"{column}__count", pa.int64())]
            else:
                fields.append(typed(column, pa.int64() if function == "count" else pa.null()))
        return pa.schema(fields).empty_table()

    def __call__(self, rows: pa.Table) -> pa.Table:
        """Aggregate one table: one group-by (its partial rows are already one per key)."""
        return self._finish(self.to_partial(rows))

    def finalize(self, accumulator: list[pa.Table]) -> pa.Table:
        return self._finish(self.merge_partials(accumulator))

    def _finish(self, partial: pa.Table) -> pa.Table:
        columns = {key: partial.column(key) for key in self.keys}
        for column, function in self.aggregations:
            if function == "mean":
                total, count = partial.column(f"{column}__sum"), partial.column(f"{column}__count")
                columns[column] = pc.divide(total, pc.cast(count, pa.float64()))
            else:
                columns[column] = partial.column(column)
        result = pa.table(columns)
        return result.cast(self.schema) if self.schema is not None else result
