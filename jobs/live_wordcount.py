"""Live word counts: the second application of the generic Lambda architecture.

Events are lines of text (one ``line`` string column; a null line is rejected).  One view,
``words``, counts words as ``str.split()`` finds them: the batch layer is a word-count
MapReduce job over the master log, the speed layer the same count per ingest batch, and
both merge with ``GroupByAggregate("word", {"count": "sum"})``.  Words are sharded over
the serving shards by stable hash, so the query ``top_words(prefix, k)`` -- the ``k`` most
frequent words starting with ``prefix`` (ties by word) -- takes each shard's top ``k`` and
merges them::

    import engine, pyarrow as pa, tempfile
    from jobs.live_wordcount import live_wordcount

    with engine.run(live_wordcount(tempfile.mkdtemp()), "inline") as words:
        words.ingest(pa.table({"line": ["the cat sat", "the dog"]}))
        words.query("top_words", prefix="", k=2).value     # [("the", 2), ("cat", 1)]
        words.recompute_batch()                             # the counts now come from MapReduce
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.common.combine import GroupByAggregate
from engine.kernels.text import count_words
from engine.lambda_arch import (EventContract, LambdaArchitecture, LambdaOptions, Query, QueryContext, ShardSnapshot,
                                View)

LINES = EventContract(pa.schema([pa.field("line", pa.string(), nullable=False)]))
COUNT_SUM = GroupByAggregate("word", {"count": "sum"}, pa.schema([("word", pa.string()), ("count", pa.int64())]))


def words_of_lines(events: pa.Table) -> pa.Table:
    """``(word, count)`` for the words of a batch of lines (each line ends a word)."""
    lines = pc.binary_join_element_wise(events.column("line"), pa.scalar(""), "\n")  # a line's end is a space
    return count_words(lines)


WORDS = View("words", words_of_lines, COUNT_SUM, shard_by=("word",), columns=("line",))


def prepare_top_words(request: dict[str, Any], context: QueryContext) -> dict[str, Any]:
    """Checks ``prefix`` (a string) and ``k`` (>= 1)."""
    unknown = sorted(set(request) - {"prefix", "k"})
    if unknown:
        raise TypeError(f"top_words() got unexpected argument(s) {unknown}; it takes ['k', 'prefix']")
    prefix, k = request.get("prefix", ""), request.get("k", 10)
    if not isinstance(prefix, str):
        raise TypeError(f"top_words prefix must be a string, got {prefix!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top_words k must be an int >= 1, got {k!r}")
    return {"prefix": prefix, "k": k}


def _top(table: pa.Table, k: int) -> pa.Table:
    return table.sort_by([("count", "descending"), ("word", "ascending")]).slice(0, k)


def top_words_on_shard(snapshot: ShardSnapshot, request: dict[str, Any]) -> pa.Table:
    """This shard's ``k`` most frequent words starting with ``prefix`` (batch + real-time)."""
    prefix = request["prefix"]
    where = (lambda table: pc.starts_with(table.column("word"), prefix)) if prefix else None
    return _top(snapshot.table("words", where), request["k"])


def merge_top_words(replies: list[pa.Table], request: dict[str, Any]) -> list[tuple[str, int]]:
    """The overall top ``k`` as ``(word, count)`` pairs (each word lives on one shard)."""
    top = _top(pa.concat_tables(replies), request["k"])
    return list(zip(top.column("word").to_pylist(), top.column("count").to_pylist()))


TOP_WORDS = Query("top_words", top_words_on_shard, merge_top_words, views=("words",), prepare=prepare_top_words)


def live_wordcount(directory: str | os.PathLike[str], options: LambdaOptions | None = None) -> LambdaArchitecture:
    """The live word-count deployment over the lines stored in ``directory``."""
    return LambdaArchitecture(directory, LINES, [WORDS], [TOP_WORDS], options)
