"""Built-in aggregators: concatenate, merge top-k, sum.

An aggregator is any ``Callable[[list[reply]], value]``; it receives the replies that
arrived (never an empty list) in worker order.  An aggregator whose class sets
``merges_in_groups = True`` promises that its answer is itself a valid reply and does not
depend on how the replies are grouped or ordered (top-k with a tie-break does; a
concatenation in worker order does not): a shard host may then merge its own shards'
replies into one before sending it (one encoding on the wire, fewer replies to merge).  The built-ins below are factories so
they can carry parameters (``top_k_replies("count", 10)``) and stay picklable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc


def _as_tables(replies: Sequence[Any]) -> list[pa.Table]:
    tables = []
    for index, reply in enumerate(replies):
        if isinstance(reply, pa.RecordBatch):
            reply = pa.Table.from_batches([reply])
        if not isinstance(reply, pa.Table):
            raise TypeError(f"reply {index} is a {type(reply).__name__}, not a pyarrow Table")
        tables.append(reply)
    return tables


_SORT_ALL_ROWS = 4096
_SORT_INDICES = pc.get_function("sort_indices")


@dataclass(frozen=True)
class ConcatReplies:
    """Concatenate table replies into one table (schemas unified, missing columns null)."""

    def __call__(self, replies: Sequence[Any]) -> pa.Table:
        return pa.concat_tables(_as_tables(replies), promote_options="default")


@dataclass(frozen=True)
class TopKReplies:
    """Merge table replies into the top ``k`` rows by ``column``.

    Ties on ``column`` are broken by ``tie_break`` (ascending) when given, which makes the
    answer deterministic; the result is sorted best first.  With a tie-break, the top k of
    groups of replies merged again is the top k of all of them (``merges_in_groups``).
    """

    column: str
    k: int
    descending: bool = True
    tie_break: str | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k!r}")

    @property
    def merges_in_groups(self) -> bool:
        """Shard hosts may pre-merge replies: only with a tie-break is the answer
        independent of grouping."""
        return self.tie_break is not None

    def sort_keys(self) -> list[tuple[str, str]]:
        """The Arrow sort keys this aggregator ranks rows by."""
        keys = [(self.column, "descending" if self.descending else "ascending")]
        if self.tie_break is not None:
            keys.append((self.tie_break, "ascending"))
        return keys

    def __call__(self, replies: Sequence[Any]) -> pa.Table:
        tables = _as_tables(replies)
        same_schema = all(t.schema.equals(tables[0].schema) for t in tables[1:])
        table = pa.concat_tables(tables) if same_schema else pa.concat_tables(tables, promote_options="default")
        if self.column not in table.column_names:
            raise KeyError(f"top-k column {self.column!r} not in replies {table.column_names}")
        keys = self.sort_keys()
        if table.num_rows <= max(self.k, _SORT_ALL_ROWS):  # small: one sort beats select + sort
            # sorting and taking from one chunk is 2-3x faster than from many small ones
            table = table.combine_chunks()
            # the function called directly: pc.sort_indices' keyword handling costs as much as the sort
            return table.take(_SORT_INDICES.call([table], pc.SortOptions(keys))[:self.k])
        picked = table.take(pc.select_k_unstable(table, k=self.k, sort_keys=keys))
        # select_k_unstable returns the k best in an unspecified order: sort those k.
        return picked.take(pc.sort_indices(picked, sort_keys=keys))


@dataclass(frozen=True)
class SumReplies:
    """Sum the replies: scalars added, or ``column`` summed over table replies."""

    column: str | None = None

    def __call__(self, replies: Sequence[Any]) -> Any:
        if self.column is None:
            values = [r.as_py() if isinstance(r, pa.Scalar) else r for r in replies]
            return sum(values[1:], values[0])
        tables = _as_tables(replies)
        return sum(pc.sum(t[self.column]).as_py() or 0 for t in tables)


def concat_replies() -> ConcatReplies:
    """Aggregator that concatenates table replies (worker order)."""
    return ConcatReplies()


def top_k_replies(column: str, k: int, descending: bool = True,
                  tie_break: str | None = None) -> TopKReplies:
    """Aggregator that merges sorted (or unsorted) table replies into the top ``k`` rows."""
    return TopKReplies(column=column, k=k, descending=descending, tie_break=tie_break)


def sum_replies(column: str | None = None) -> SumReplies:
    """Aggregator that adds scalar replies, or sums ``column`` across table replies."""
    return SumReplies(column=column)
