"""Where data comes from, for every pattern: one set of source classes with one set of rules.

A source is an inert description.  ``read()`` opens it and yields ``SourceBatch``es in
source order: the rows as a ``pa.Table``, where they came from (per-row offsets, for
error messages and dead letters) and the *bad input records* met on the way (a text line
that is not UTF-8), which every pattern sends to its dead letters instead of failing or
dropping them silently.

Splittable sources (text, Parquet, tables) also cut themselves into ``InputSplit``s, the
unit of one MapReduce map task; ``read()`` is then the reading of every split in order,
so a pipeline and a MapReduce job see exactly the same rows from the same source.

Text rules (both patterns): a line ends at ``\\n`` only and keeps its terminator (as
``for line in open(path, "rb")`` yields it); empty lines are rows; a file is split by
byte ranges and a split owns the lines that *start* inside it; a line that is not valid
UTF-8 is a bad record.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.common.tables import as_table
from engine.errors import SpecError
from engine.io.splits import InputSplit, expand_paths
from engine.io.text import DEFAULT_MAX_LINE_BYTES, LINE_COLUMN, TEXT_COLUMN, read_text_split

PathsLike = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]
TEXT_RECORDS = ("lines", "blocks")


@dataclass(frozen=True)
class BadRecord:
    """An input record that could not be read: where it is, why, and its raw bytes."""

    location: str
    offset: int
    reason: str
    data: bytes


@dataclass(frozen=True)
class SourceBatch:
    """One batch read from a source.

    ``row_offsets[i]`` locates row ``i`` inside ``location`` (a byte offset for text, a
    row number otherwise); ``input_bytes`` is the input the batch covered (text only);
    ``records`` counts the input records the rows hold (lines, for text read in blocks).
    ``remote``, when set, is the same rows in a form an executor sends by reference (see
    ``engine.pipeline.source_blocks``); sources never set it.
    """

    table: pa.Table
    location: str
    row_offsets: np.ndarray
    bad_records: tuple[BadRecord, ...] = ()
    input_bytes: int = 0
    records: int | None = None
    remote: object | None = None

    @property
    def record_count(self) -> int:
        """Input records in this batch: ``records`` when given, else its rows."""
        return self.table.num_rows if self.records is None else self.records


def _positive_int(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{what} must be an int >= 1, got {value!r}")


def _as_paths(paths: PathsLike, what: str) -> tuple[str, ...]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    result = tuple(os.fspath(p) for p in paths)
    if not result:
        raise SpecError(f"{what} needs at least one path")
    return result


class Source:
    """Base of all sources: ``read()`` yields the batches of one run in source order."""

    def read(self) -> Iterator[SourceBatch]:
        """Yield every ``SourceBatch`` of the source, in order."""
        raise NotImplementedError

    def batches(self) -> Iterator[pa.Table]:
        """Yield just the tables of ``read()`` (bad records are not reported here)."""
        for batch in self.read():
            yield batch.table


class SplittableSource(Source):
    """A source that can be cut into independent splits (one MapReduce map task each)."""

    def plan_splits(self) -> list[InputSplit]:
        """Every split, in a deterministic order; raises ``InputNotFoundError`` for a
        path that matches nothing."""
        raise NotImplementedError

    def read_split(self, split: InputSplit) -> Iterator[SourceBatch]:
        """The batches of one split, in order."""
        raise NotImplementedError

    def empty_table(self) -> pa.Table:
        """A zero-row table shaped like this source's batches."""
        raise NotImplementedError

    def describe(self) -> dict:
        """A JSON-safe description of what is read (for job fingerprints): paths with
        their sizes and modification times, so changed data changes the description."""
        raise NotImplementedError

    def read(self) -> Iterator[SourceBatch]:
        for split in self.plan_splits():
            yield from self.read_split(split)


def _line_count(column: pa.ChunkedArray) -> int:
    """Lines in the values of a text-block column: its newlines, plus a last line without one."""
    lines = 0
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int64 if pa.types.is_large_string(chunk.type) else np.int32)
        offsets = offsets[chunk.offset: chunk.offset + len(chunk) + 1]
        data = np.frombuffer(chunk.buffers()[2], dtype=np.uint8)[int(offsets[0]): int(offsets[-1])]
        lines += int(np.count_nonzero(data == 0x0A))
        ends = offsets[1:] - 1
        nonempty = offsets[1:] > offsets[:-1]
        lines += int(np.count_nonzero(nonempty & (data[np.maximum(ends - offsets[0], 0)] != 0x0A)))
    return lines


def _file_facts(paths: list[str]) -> list[list]:
    facts = []
    for path in paths:
        stat = os.stat(path)
        facts.append([str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns])
    return facts


@dataclass(frozen=True)
class TextSource(SplittableSource):
    """UTF-8 text files (paths, directories or globs), split into line-aligned byte ranges.

    - ``records="lines"``: batches with one ``line`` column (string), one value per line,
      terminator kept; ``"blocks"``: one ``text`` column, each value a run of whole lines
      (about ``batch_size`` bytes) viewed zero-copy over the bytes read.
    - ``split_size``: bytes per split (one MapReduce map task); ``batch_size``: bytes per batch.
    - ``max_line_bytes``: a line longer than this and than a batch is not read into memory:
      it is skipped as a bad record (its first KiB in the dead letter).
    """

    paths: tuple[str, ...]
    split_size: int = 64 * 1024 * 1024
    batch_size: int = 8 * 1024 * 1024
    records: str = "lines"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES

    def __init__(self, paths: PathsLike, split_size: int = 64 * 1024 * 1024, batch_size: int = 8 * 1024 * 1024,
                 records: str = "lines", max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        object.__setattr__(self, "paths", _as_paths(paths, "TextSource"))
        object.__setattr__(self, "split_size", split_size)
        object.__setattr__(self, "batch_size", batch_size)
        object.__setattr__(self, "records", records)
        object.__setattr__(self, "max_line_bytes", max_line_bytes)
        _positive_int(split_size, "TextSource.split_size")
        _positive_int(batch_size, "TextSource.batch_size")
        _positive_int(max_line_bytes, "TextSource.max_line_bytes")
        if records not in TEXT_RECORDS:
            raise SpecError(f"TextSource.records must be one of {TEXT_RECORDS}, got {records!r}")

    def files(self) -> list[str]:
        """The files read, sorted (hidden files and ``_``-markers inside directories skipped)."""
        return expand_paths(self.paths)

    def plan_splits(self) -> list[InputSplit]:
        splits = []
        for path in self.files():
            size = Path(path).stat().st_size
            for start in range(0, size, self.split_size):
                splits.append(InputSplit("text", path, start, min(size, start + self.split_size)))
        return splits

    def read_split(self, split: InputSplit) -> Iterator[SourceBatch]:
        for table, bad_lines, nbytes, offsets in read_text_split(split, self.batch_size, self.records,
                                                                   self.max_line_bytes):
            bad = tuple(BadRecord(b.path, b.offset, b.reason, b.data) for b in bad_lines)
            lines = _line_count(table.column(0)) if self.records == "blocks" else None
            yield SourceBatch(table, split.path, offsets, bad, nbytes, lines)

    def empty_table(self) -> pa.Table:
        column = TEXT_COLUMN if self.records == "blocks" else LINE_COLUMN
        return pa.table({column: pa.array([], pa.large_string())})

    def describe(self) -> dict:
        return {"kind": "text", "files": _file_facts(self.files()), "split_size": self.split_size,
                "records": self.records, "max_line_bytes": self.max_line_bytes}


@dataclass(frozen=True)
class ParquetSource(SplittableSource):
    """Parquet files (paths, directories of ``*.parquet``/``*.pq``, globs); one split per
    row group, read in batches of ``batch_rows`` rows; ``columns`` selects a projection."""

    paths: tuple[str, ...]
    columns: tuple[str, ...] | None = None
    batch_rows: int = 65_536

    def __init__(self, paths: PathsLike, columns: Sequence[str] | None = None, batch_rows: int = 65_536) -> None:
        object.__setattr__(self, "paths", _as_paths(paths, "ParquetSource"))
        object.__setattr__(self, "columns", tuple(columns) if columns is not None else None)
        object.__setattr__(self, "batch_rows", batch_rows)
        _positive_int(batch_rows, "ParquetSource.batch_rows")

    def files(self) -> list[str]:
        """The Parquet files read, sorted."""
        return expand_paths(self.paths, suffixes=(".parquet", ".pq"))

    def plan_splits(self) -> list[InputSplit]:
        splits = []
        for path in self.files():
            try:
                groups = pq.ParquetFile(path).metadata.num_row_groups
            except Exception as error:  # pyarrow raises several types for a bad file
                raise SpecError(f"not a readable Parquet file: {path} ({error})") from None
            splits.extend(InputSplit("parquet", path, g, g + 1) for g in range(groups))
        return splits

    def read_split(self, split: InputSplit) -> Iterator[SourceBatch]:
        columns = list(self.columns) if self.columns else None
        reader = pq.ParquetFile(split.path)
        location = f"{split.path}#row-group-{split.start}"
        first = 0
        for batch in reader.iter_batches(batch_size=self.batch_rows, row_groups=[split.start], columns=columns):
            table = pa.Table.from_batches([batch])
            yield SourceBatch(table, location, np.arange(first, first + table.num_rows))
            first += table.num_rows

    def empty_table(self) -> pa.Table:
        files = self.files()
        if not files:
            return pa.table({})
        schema = pq.read_schema(files[0])
        if self.columns:
            schema = pa.schema([schema.field(c) for c in self.columns])
        return schema.empty_table()

    def describe(self) -> dict:
        return {"kind": "parquet", "files": _file_facts(self.files()),
                "columns": list(self.columns) if self.columns else None}


@dataclass(frozen=True)
class TableSource(SplittableSource):
    """In-memory Arrow tables, read in batches of ``batch_rows`` rows (zero-copy slices);
    MapReduce cuts them into splits of ``split_rows`` rows (default: ``batch_rows``)."""

    tables: tuple[pa.Table, ...]
    batch_rows: int = 65_536
    split_rows: int | None = None

    def __init__(self, tables: Union[pa.Table, pa.RecordBatch, Sequence[pa.Table]], batch_rows: int = 65_536,
                 split_rows: int | None = None) -> None:
        if isinstance(tables, (pa.Table, pa.RecordBatch)):
            tables = [tables]
        converted = []
        for index, table in enumerate(tables):
            if isinstance(table, pa.RecordBatch):
                table = pa.Table.from_batches([table])
            if not isinstance(table, pa.Table):
                raise SpecError(f"TableSource table {index} is a {type(table).__name__}, not a pyarrow Table")
            converted.append(table)
        object.__setattr__(self, "tables", tuple(converted))
        object.__setattr__(self, "batch_rows", batch_rows)
        object.__setattr__(self, "split_rows", split_rows)
        _positive_int(batch_rows, "TableSource.batch_rows")
        if split_rows is not None:
            _positive_int(split_rows, "TableSource.split_rows")

    def plan_splits(self) -> list[InputSplit]:
        rows_per_split = self.split_rows or self.batch_rows
        splits = []
        for index, table in enumerate(self.tables):
            for start in range(0, table.num_rows, rows_per_split):
                splits.append(InputSplit("table", "", start, min(table.num_rows, start + rows_per_split), index))
        return splits

    def read_split(self, split: InputSplit) -> Iterator[SourceBatch]:
        table = self.tables[split.index]
        for start in range(split.start, split.end, self.batch_rows):
            length = min(self.batch_rows, split.end - start)
            yield SourceBatch(table.slice(start, length), f"table-{split.index}", np.arange(start, start + length))

    def empty_table(self) -> pa.Table:
        return self.tables[0].slice(0, 0) if self.tables else pa.table({})

    def describe(self) -> dict:
        return {"kind": "table", "tables": [str(t.schema) for t in self.tables],
                "rows": [t.num_rows for t in self.tables], "split_rows": self.split_rows or self.batch_rows}


@dataclass(frozen=True)
class IteratorSource(Source):
    """Any Python iterable of Arrow tables / record batches (consumed once; pipelines only)."""

    iterable: Iterable[pa.Table | pa.RecordBatch]

    def read(self) -> Iterator[SourceBatch]:
        first = 0
        for batch in self.iterable:
            table = as_table(batch, "IteratorSource")
            yield SourceBatch(table, "iterator", np.arange(first, first + table.num_rows))
            first += table.num_rows


class LiveFeed(Source):
    """A live source: producers ``push`` batches, a run consumes them, ``close()`` ends it.

    The feed holds at most ``capacity`` batches: ``push`` blocks while it is full
    (backpressure on the producer), or raises ``queue.Full`` after ``timeout_s``.  With a
    ``rate_limiter`` (``engine.common.rate_limit.RateLimiter``) every push is first
    admitted for ``batch.num_rows`` tokens of its ``client_id``.  A feed serves one run.
    """

    def __init__(self, capacity: int = 8, rate_limiter: object | None = None) -> None:
        _positive_int(capacity, "LiveFeed.capacity")
        self.capacity = capacity
        self._queue: queue.Queue[pa.Table] = queue.Queue(maxsize=capacity)
        self._rate_limiter = rate_limiter
        self._closed = threading.Event()
        self._count_lock = threading.Lock()
        self.pushed_batches = 0

    def push(self, batch: pa.Table | pa.RecordBatch, client_id: str = "default", timeout_s: float | None = None) -> None:
        """Add a batch; blocks while the feed is full.  Raises after ``close()``."""
        if self._closed.is_set():
            raise RuntimeError("LiveFeed.push after close(): the feed has ended")
        table = as_table(batch, "LiveFeed.push")
        if self._rate_limiter is not None:
            self._rate_limiter.admit(client_id, table.num_rows)  # type: ignore[attr-defined]
        self._queue.put(table, timeout=timeout_s)
        with self._count_lock:
            self.pushed_batches += 1

    def close(self) -> None:
        """End the feed: batches already pushed are still delivered, then the run's source
        ends.  Call it once producers have stopped pushing."""
        self._closed.set()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed.is_set()

    def depth(self) -> int:
        """Batches pushed and not yet taken by the run."""
        return self._queue.qsize()

    def read(self) -> Iterator[SourceBatch]:
        first = 0
        while True:
            try:
                table = self._queue.get(timeout=0.02)
            except queue.Empty:
                if self._closed.is_set() and self._queue.empty():
                    return
                continue
            yield SourceBatch(table, "live-feed", np.arange(first, first + table.num_rows))
            first += table.num_rows


__all__ = ["BadRecord", "IteratorSource", "LiveFeed", "ParquetSource", "Source", "SourceBatch",
           "SplittableSource", "TableSource", "TextSource"]
