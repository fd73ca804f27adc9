"""Plain-Python oracles the engine is compared with (no Arrow, no engine code)."""

from __future__ import annotations

import collections
from pathlib import Path


def wordcount_oracle(files: list[Path]) -> dict[str, int]:
    """``Counter(word for line in text for word in line.split())`` over valid UTF-8 lines."""
    counts: collections.Counter = collections.Counter()
    for path in files:
        for raw in path.read_bytes().split(b"\n"):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            counts.update(line.split())
    return dict(counts)


def table_to_dict(table) -> dict[str, int]:
    """A (word, count) table as a dict, failing on a duplicated word."""
    words = table.column("word").to_pylist()
    counts = table.column("count").to_pylist()
    assert len(set(words)) == len(words), "a word appears twice in the output"
    return dict(zip(words, counts))
