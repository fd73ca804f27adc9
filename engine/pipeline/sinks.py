"""Where a pipeline's batches go: a Parquet directory, a Python callback, or a collector.

A sink is a description; ``open()`` gives a writer for one run.  The executor calls
``write(batch_name, table)`` at most once per batch name (its exactly-once commit) and
``close()`` at the end.  Batch names are stable (source sequence number plus split
path), so a Parquet part written twice would land under the same file name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from engine.pipeline.batches import concat
from engine.common.retry import RetryPolicy


class SinkWriter:
    """One run's open sink."""

    def write(self, batch_name: str, table: pa.Table) -> None:
        """Commit one batch (never empty) under its stable name."""
        raise NotImplementedError

    def close(self) -> pa.Table | None:
        """Finish the run; a collecting sink returns what it collected."""
        return None


def commit(writer: SinkWriter, batch_name: str, table: pa.Table, retry: RetryPolicy | None) -> None:
    """Write one batch, retrying transient failures per ``retry`` (if any)."""
    if retry is None:
        writer.write(batch_name, table)
    else:
        retry.call(writer.write, batch_name, table)


class Sink:
    """Base of all sinks: ``open()`` returns the writer of one run."""

    def open(self) -> SinkWriter:
        """Open the sink for one run."""
        raise NotImplementedError


_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class _ParquetWriter(SinkWriter):
    def __init__(self, directory: Path, compression: str) -> None:
        self.directory = directory
        self.compression = compression
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "_SUCCESS").unlink(missing_ok=True)

    def write(self, batch_name: str, table: pa.Table) -> None:
        if not _NAME.match(batch_name):
            raise ValueError(f"ParquetSink: batch name {batch_name!r} is not a safe file name")
        final = self.directory / f"part-{batch_name}.parquet"
        temporary = self.directory / f".tmp-part-{batch_name}.parquet"
        pq.write_table(table, temporary, compression=self.compression)
        os.replace(temporary, final)  # atomic: a reader never sees a torn part

    def close(self) -> None:
        (self.directory / "_SUCCESS").write_text("")
        return None


@dataclass(frozen=True)
class ParquetSink(Sink):
    """A directory of ``part-<batch>.parquet`` files written atomically, then ``_SUCCESS``."""

    directory: str
    compression: str = "snappy"

    def open(self) -> SinkWriter:
        return _ParquetWriter(Path(os.fspath(self.directory)), self.compression)


class _CallbackWriter(SinkWriter):
    def __init__(self, callback: Callable[[pa.Table], object]) -> None:
        self.callback = callback

    def write(self, batch_name: str, table: pa.Table) -> None:
        self.callback(table)


@dataclass(frozen=True)
class CallbackSink(Sink):
    """Calls ``callback(table)`` once per delivered batch, from one thread, one at a time."""

    callback: Callable[[pa.Table], object]

    def __post_init__(self) -> None:
        if not callable(self.callback):
            raise TypeError(f"CallbackSink needs a callable, got {type(self.callback).__name__}")

    def open(self) -> SinkWriter:
        return _CallbackWriter(self.callback)


class _CollectWriter(SinkWriter):
    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def write(self, batch_name: str, table: pa.Table) -> None:
        self.tables.append(table)

    def close(self) -> pa.Table | None:
        return concat(self.tables)


@dataclass(frozen=True)
class CollectSink(Sink):
    """Collects every delivered batch in memory; the run's result holds them as one table."""

    def open(self) -> SinkWriter:
        return _CollectWriter()
