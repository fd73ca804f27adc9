"""Where results go, for every pattern: a Parquet directory, a Python callback, a collector.

A sink is an inert description; ``open()`` gives the writer of one run.  Executors call
``write(batch_name, table)`` at most once per batch name (their exactly-once commit) and
``close()`` at the end.  Batch names are stable (a pipeline's source sequence number and
split path; a MapReduce reduce partition; a replayed dead letter's id), so a part written
twice lands under the same file name.  MapReduce outputs are ``ParquetSink``s too: one
part per reduce partition.

A sink with ``stable_commits`` (``ParquetSink``) remembers its commits across processes:
``open(resume=True)`` keeps what an earlier, interrupted run committed, and the writer's
``committed()`` names it, so a resumed run or a repeated replay skips those batches
(exactly-once across crashes).  Other sinks cannot tell, and refuse ``resume``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, ClassVar

import pyarrow as pa

from engine.common.tables import concat
from engine.io import parts


class SinkWriter:
    """One run's open sink."""

    def write(self, batch_name: str, table: pa.Table) -> None:
        """Commit one batch (never empty) under its stable name."""
        raise NotImplementedError

    def close(self) -> pa.Table | None:
        """Finish the run; a collecting sink returns what it collected."""
        return None

    def committed(self) -> frozenset[str]:
        """The batch names this sink holds already (from an earlier run, and this one's
        writes); always empty for a sink without ``stable_commits``."""
        return frozenset()

    def run_token(self) -> str | None:
        """A token of the run the sink's contents belong to, shared by a run and its resumed
        runs (``None`` for a sink without ``stable_commits``)."""
        return None


class Sink:
    """Base of all sinks: ``open()`` returns the writer of one run."""

    stable_commits: ClassVar[bool] = False

    def open(self, resume: bool = False) -> SinkWriter:
        """Open the sink for one run (``resume``: keep an earlier run's commits)."""
        raise NotImplementedError

    def _refuse_resume(self, resume: bool) -> None:
        if resume:
            raise ValueError(f"{type(self).__name__} cannot resume: it does not remember its commits "
                             f"(use a ParquetSink)")


class _ParquetWriter(SinkWriter):
    def __init__(self, sink: "ParquetSink", committed: set[str], token: str) -> None:
        self.sink = sink
        self._committed = committed
        self._token = token

    def write(self, batch_name: str, table: pa.Table) -> None:
        self.sink.write_part(batch_name, table)
        self._committed.add(batch_name)

    def committed(self) -> frozenset[str]:
        return frozenset(self._committed)

    def run_token(self) -> str:
        return self._token

    def close(self) -> None:
        self.sink.commit()
        return None


@dataclass(frozen=True)
class ParquetSink(Sink):
    """A directory of ``part-<name>.parquet`` files written atomically, then ``_SUCCESS``.

    Opening it refuses a directory that already holds parts of an earlier result unless
    ``overwrite=True``, which first removes that result (and only it), or ``resume``, which
    keeps its parts and adds to them (see the module docstring).
    """

    stable_commits: ClassVar[bool] = True

    directory: str
    compression: str = "snappy"
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "directory", os.fspath(self.directory))

    def prepare(self) -> None:
        """Create the directory, refusing or clearing an earlier result (see the class)."""
        parts.prepare_directory(self.directory, self.overwrite)

    def write_part(self, name: int | str, table: pa.Table) -> str:
        """Write one part atomically; returns its path."""
        return parts.write_part(self.directory, name, table, self.compression)

    def commit(self, summary: dict | None = None) -> None:
        """Mark the result complete: the summary (if any), then ``_SUCCESS``."""
        parts.write_success(self.directory, summary)

    def read(self) -> pa.Table:
        """Every part as one table, in part-name order."""
        return parts.read_parts(self.directory)

    def committed_names(self) -> set[str]:
        """The batch names of the parts committed in the directory now."""
        return parts.committed_names(self.directory)

    def open(self, resume: bool = False) -> SinkWriter:
        if resume:
            parts.reopen_directory(self.directory)
        else:
            self.prepare()
        return _ParquetWriter(self, self.committed_names(), parts.run_token(self.directory, fresh=not resume))


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

    def open(self, resume: bool = False) -> SinkWriter:
        self._refuse_resume(resume)
        return _CallbackWriter(self.callback)


class _CollectWriter(SinkWriter):
    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def write(self, batch_name: str, table: pa.Table) -> None:
        self.tables.append(table)

    def close(self) -> pa.Table | None:
        return concat(self.tables) if self.tables else None


@dataclass(frozen=True)
class CollectSink(Sink):
    """Collects every delivered batch in memory; the run's result holds them as one table."""

    def open(self, resume: bool = False) -> SinkWriter:
        self._refuse_resume(resume)
        return _CollectWriter()
