"""The word-count job as data: its map, combine and reduce functions and a builder.

Kept apart from the command line (``jobs/wordcount.py``) so that worker processes import
only what they run.  The job reads its text as whole-line blocks (``TextSource(...,
records="blocks")``: one zero-copy ``text`` value per split, no per-line objects) and maps
each block with the compiled ``count_words`` kernel; map outputs are combined by the
compiled ``sum_by_key``.
"""

from __future__ import annotations

import os
from typing import Sequence

import pyarrow as pa

from engine.common.combine import GroupByAggregate
from engine.io.sources import TextSource
from engine.mapreduce.spec import JobOptions, MapReduceJob

SUM_COUNTS = GroupByAggregate("word", {"count": "sum"})
# The compiled kernels (numba: about 0.3 s to import) are imported where they run, in the
# workers: the driver that builds and submits the job never needs them.
_SLACK = 64 * 1024


def count_words_in_text(batch: pa.Table) -> pa.Table:
    """Map over ``records="blocks"`` input: ``(word, count)`` for the words of the ``text`` column,
    each value split as ``str.split()`` splits it."""
    from engine.kernels.text import count_words

    return count_words(batch.column("text"))


def count_words_in_lines(batch: pa.Table) -> pa.Table:
    """Map over ``records="lines"`` input: ``(word, count)`` for the words of the ``line`` column,
    each line split as ``str.split()`` splits it."""
    from engine.kernels.text import count_words

    return count_words(batch.column("line"))


def sum_word_counts(table: pa.Table) -> pa.Table:
    """Combine: one ``(word, count)`` row per distinct word with the summed counts, by the
    compiled ``sum_by_key`` (``SUM_COUNTS``, Arrow's group-by, when a word is null, and for a
    small table while this process is still loading the compiled kernels)."""
    from engine.kernels.readiness import use_compiled

    if table.column("word").null_count or not use_compiled(table.nbytes):
        return SUM_COUNTS(table)
    from engine.kernels.aggregate import sum_by_key

    return sum_by_key(table, "word", "count")


def wordcount_job(inputs: Sequence[str | os.PathLike], output: str | os.PathLike | None, reducers: int | None = None,
                  split_size: int = 64 * 1024 * 1024, options: JobOptions | None = None,
                  name: str = "wordcount") -> MapReduceJob:
    """A word count over UTF-8 text files: output columns ``word`` (string), ``count`` (int64).

    Each split is read as one block (its line-aligned range exceeds ``split_size`` by less
    than a line, hence the 64 KiB of slack), so a map task usually makes one kernel call and
    its output is already one row per distinct word.
    """
    return MapReduceJob(
        name=name,
        source=TextSource(list(inputs), split_size=split_size, batch_size=split_size + _SLACK, records="blocks"),
        map=count_words_in_text,
        combine=sum_word_counts,
        reduce=SUM_COUNTS,
        keys=["word"],
        reducers=reducers,
        output=output,
        options=options,
    )
