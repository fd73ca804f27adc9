"""The word-count job as data: its map, combine and reduce functions and a builder.

Kept apart from the command line (``jobs/wordcount.py``) so that worker processes import
only what they run.
"""

from __future__ import annotations

import os
from typing import Sequence

import pyarrow as pa

from engine.kernels.text import count_words
from engine.common.combine import GroupByAggregate
from engine.io.sources import TextSource
from engine.mapreduce.spec import JobOptions, MapReduceJob

SUM_COUNTS = GroupByAggregate("word", {"count": "sum"})


def count_words_in_lines(batch: pa.Table) -> pa.Table:
    """Map: ``(word, count)`` for the words of a batch of lines, split as ``str.split()`` does."""
    return count_words(batch.column("line"))


def wordcount_job(inputs: Sequence[str | os.PathLike], output: str | os.PathLike | None, reducers: int | None = None,
                  split_size: int = 64 * 1024 * 1024, options: JobOptions | None = None,
                  name: str = "wordcount") -> MapReduceJob:
    """A word count over UTF-8 text files: output columns ``word`` (string), ``count`` (int64)."""
    return MapReduceJob(
        name=name,
        source=TextSource(list(inputs), split_size=split_size),
        map=count_words_in_lines,
        combine=SUM_COUNTS,
        reduce=SUM_COUNTS,
        keys=["word"],
        reducers=reducers,
        output=output,
        options=options,
    )
