"""The master log's segment files as a MapReduce source: the batch layer's input.

Each map task reads its own segment files (memory-mapped Arrow IPC, only the columns a
view reads), so the events never pass through the driver or the object store.  A split
is a run of consecutive segments holding about ``split_rows`` events, read as one batch:
a few large map tasks rather than one per segment, whose fixed cost (a task, a shuffle
output per reducer) would otherwise dominate a small view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from engine.io.sources import SourceBatch, SplittableSource, _file_facts, _positive_int
from engine.io.splits import InputSplit
from engine.lambda_arch.log import Segment, read_segment

SEGMENTS = "log-segments"


@dataclass(frozen=True)
class SegmentSource(SplittableSource):
    """The events of ``segments`` (consecutive, in offset order) with ``columns`` of
    ``schema`` (all when None), in splits of whole segments of at least ``split_rows``
    events each (the last split may hold fewer)."""

    segments: tuple[Segment, ...]
    schema: pa.Schema
    columns: tuple[str, ...] | None = None
    split_rows: int = 1_000_000

    def __init__(self, segments: Sequence[Segment], schema: pa.Schema, columns: Sequence[str] | None = None,
                 split_rows: int = 1_000_000) -> None:
        object.__setattr__(self, "segments", tuple(segments))
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "columns", tuple(columns) if columns is not None else None)
        object.__setattr__(self, "split_rows", split_rows)
        _positive_int(split_rows, "SegmentSource.split_rows")

    def plan_splits(self) -> list[InputSplit]:
        splits, first, rows = [], 0, 0
        for index, segment in enumerate(self.segments):
            rows += segment.rows
            if rows >= self.split_rows or index == len(self.segments) - 1:
                splits.append(InputSplit(SEGMENTS, str(self.segments[first].path), first, index + 1))
                first, rows = index + 1, 0
        return splits

    def read_split(self, split: InputSplit) -> Iterator[SourceBatch]:
        segments = self.segments[split.start:split.end]
        if not segments:
            return
        columns = list(self.columns) if self.columns is not None else None
        table = pa.concat_tables([read_segment(segment, columns) for segment in segments])
        yield SourceBatch(table, f"{segments[0].path} (+{len(segments) - 1} segments)",
                          np.arange(segments[0].begin, segments[0].begin + table.num_rows))

    def empty_table(self) -> pa.Table:
        schema = self.schema if self.columns is None else pa.schema([self.schema.field(c) for c in self.columns])
        return schema.empty_table()

    def describe(self) -> dict:
        return {"kind": SEGMENTS, "files": _file_facts([str(segment.path) for segment in self.segments]),
                "columns": list(self.columns) if self.columns is not None else None, "split_rows": self.split_rows}
