"""Where a pipeline's batches come from: Arrow tables, Parquet and text files, a Python
iterator of batches, and a live feed that producers push to.

A source is a description; ``batches()`` opens it and yields ``pa.Table`` batches in
source order.  Table, Parquet and text sources can be read again for every run; an
iterator source and a live feed are consumed by the run that reads them.
"""

from __future__ import annotations

import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from engine.pipeline.batches import as_table


class Source:
    """Base of all sources: ``batches()`` yields the batches of one run in source order."""

    def batches(self) -> Iterator[pa.Table]:
        """Yield the source's batches (``pa.Table``)."""
        raise NotImplementedError


def _check_batch_rows(batch_rows: int, what: str) -> None:
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"{what}.batch_rows must be an int >= 1, got {batch_rows!r}")


@dataclass(frozen=True)
class TableSource(Source):
    """An in-memory Arrow table, cut into batches of ``batch_rows`` rows (zero-copy slices)."""

    table: pa.Table
    batch_rows: int = 65_536

    def __post_init__(self) -> None:
        if not isinstance(self.table, pa.Table):
            raise TypeError(f"TableSource needs a pyarrow Table, got {type(self.table).__name__}")
        _check_batch_rows(self.batch_rows, "TableSource")

    def batches(self) -> Iterator[pa.Table]:
        for start in range(0, self.table.num_rows, self.batch_rows):
            yield self.table.slice(start, self.batch_rows)


def _files(path: str, suffix: str, what: str) -> list[Path]:
    root = Path(path)
    if root.is_file():
        return [root]
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(suffix))
        if not files:
            raise FileNotFoundError(f"{what}: no *{suffix} files in directory {path}")
        return files
    raise FileNotFoundError(f"{what}: {path} does not exist")


@dataclass(frozen=True)
class ParquetSource(Source):
    """A Parquet file or a directory of ``*.parquet`` files (sorted by name), read in batches."""

    path: str
    batch_rows: int = 65_536
    columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_batch_rows(self.batch_rows, "ParquetSource")

    def batches(self) -> Iterator[pa.Table]:
        for file in _files(os.fspath(self.path), ".parquet", "ParquetSource"):
            reader = pq.ParquetFile(file)
            columns = list(self.columns) if self.columns else None
            for batch in reader.iter_batches(batch_size=self.batch_rows, columns=columns):
                yield pa.Table.from_batches([batch])


@dataclass(frozen=True)
class TextSource(Source):
    """A text file or a directory of ``*.txt`` files, as batches of one ``line`` column.

    Lines are read as UTF-8 with pyarrow's CSV reader (no quoting, no delimiter), about
    ``block_bytes`` per batch; empty lines are skipped.
    """

    path: str
    block_bytes: int = 4 << 20

    def __post_init__(self) -> None:
        if not isinstance(self.block_bytes, int) or self.block_bytes < 1024:
            raise ValueError(f"TextSource.block_bytes must be an int >= 1024, got {self.block_bytes!r}")

    def batches(self) -> Iterator[pa.Table]:
        read = pacsv.ReadOptions(column_names=["line"], block_size=self.block_bytes)
        parse = pacsv.ParseOptions(delimiter="\x1f", quote_char=False, escape_char=False)
        convert = pacsv.ConvertOptions(column_types={"line": pa.string()})
        for file in _files(os.fspath(self.path), ".txt", "TextSource"):
            with pacsv.open_csv(file, read_options=read, parse_options=parse, convert_options=convert) as reader:
                for batch in reader:
                    yield pa.Table.from_batches([batch])


@dataclass(frozen=True)
class IteratorSource(Source):
    """Any Python iterable of Arrow tables / record batches (consumed once)."""

    iterable: Iterable[pa.Table | pa.RecordBatch]

    def batches(self) -> Iterator[pa.Table]:
        for batch in self.iterable:
            yield as_table(batch, "IteratorSource")



class LiveFeed(Source):
    """A live source: producers ``push`` batches, a run consumes them, ``close()`` ends it.

    The feed holds at most ``capacity`` batches: ``push`` blocks while it is full
    (backpressure on the producer), or raises ``queue.Full`` after ``timeout_s``.  With a
    ``rate_limiter`` (``engine.common.rate_limit.RateLimiter``) every push is first admitted
    for ``batch.num_rows`` tokens of its ``client_id``.  A feed serves one run.
    """

    def __init__(self, capacity: int = 8, rate_limiter: object | None = None) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"LiveFeed.capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
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
        """End the feed: batches already pushed are still delivered, then the run's source ends.

        Call it once producers have stopped pushing.
        """
        self._closed.set()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed.is_set()

    def depth(self) -> int:
        """Batches pushed and not yet taken by the run."""
        return self._queue.qsize()

    def batches(self) -> Iterator[pa.Table]:
        while True:
            try:
                yield self._queue.get(timeout=0.02)
            except queue.Empty:
                if self._closed.is_set() and self._queue.empty():
                    return
