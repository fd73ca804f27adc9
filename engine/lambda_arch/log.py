"""The master dataset: an append-only log of immutable, durable Arrow IPC segment files.

Layout of ``<directory>/log/``::

    seg-<first offset, 16 digits>-<end offset, 16 digits>.arrow   one per ingest call
    LOCK                                                           held by the open log

Each ingest validates its batch with the deployment's ``EventContract``, rejects rows
whose event time is null or outside the plausibility window (``event_time.py``), drops
duplicates of its id column (see ``dedup.py``), numbers the stored rows with consecutive
offsets, writes them as one segment (temporary name, ``fsync``, atomic rename, ``fsync``
of the directory) and only then returns an :class:`IngestAck`.  Rejected rows go to the
engine's dead-letter store (pattern ``lambda``, step ``ingest``) with their reason before
the acknowledgement too.  Segments never change once written; reopening the directory
lists them, checks that their offsets are contiguous, and rebuilds the dedup index.
"""

from __future__ import annotations

import bisect
import fcntl
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from engine.common.atomic_files import remove_temporary_files, write_ipc_atomically
from engine.common.dead_letters import DeadLetterStore
from engine.lambda_arch.contract import OFFSET, REASON, EventContract, merge_rejected, split_batch
from engine.lambda_arch.dedup import DedupIndex, EventIds
from engine.lambda_arch.event_time import EventTimeWindow

_SEGMENT = re.compile(r"^seg-(\d{16})-(\d{16})\.arrow$")
INGEST_STAGE = "ingest"
_DEFAULT_WINDOW = EventTimeWindow()


@dataclass(frozen=True)
class IngestAck:
    """What one ingest stored: offsets ``[first_offset, end_offset)`` are durable.

    ``accepted`` rows were stored (``end_offset - first_offset``), ``duplicates`` were
    dropped as re-sent events, ``rejected`` went to the dead letters (``dead_letter_id``).
    """

    first_offset: int
    end_offset: int
    accepted: int
    duplicates: int
    rejected: int
    dead_letter_id: str | None = None


@dataclass(frozen=True)
class Segment:
    """One immutable segment file holding offsets ``[begin, end)``."""

    begin: int
    end: int
    path: Path

    @property
    def rows(self) -> int:
        """Number of events in the segment."""
        return self.end - self.begin


def read_segment(segment: Segment, columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of one segment (memory-mapped IPC; ``columns`` selects a projection, and
    only those columns are read and decompressed)."""
    with pa.memory_map(str(segment.path)) as source:
        if columns is None:
            return ipc.open_file(source).read_all()
        names = ipc.open_file(source).schema.names
        fields = sorted({names.index(column) for column in columns})
        table = ipc.open_file(source, options=ipc.IpcReadOptions(included_fields=fields)).read_all()
    return table.select(list(columns))


class MasterLog:
    """The append-only event log in ``directory``; one writer (process) at a time.

    ``ingest(batch)`` is thread-safe and serialized.  ``segments()``/``read()`` may be
    called from any thread while ingests go on (segments are immutable once listed).
    ``time_window`` (``None``: off) says which event times are plausible; ``clock`` is
    the wall clock it uses (epoch seconds).
    """

    def __init__(self, directory: str | os.PathLike[str], contract: EventContract,
                 dedup_horizon_ms: int = 24 * 3_600_000, compression: str | None = "lz4",
                 time_window: EventTimeWindow | None = _DEFAULT_WINDOW,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory)
        self.contract = contract
        self._time_window = time_window
        self._clock = clock
        self.schema = contract.log_schema
        self.log_directory = self.directory / "log"
        self.log_directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(self.log_directory / "LOCK", "a+")
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RuntimeError(f"master log {self.log_directory} is open in another process") from None
        self.dead_letters = DeadLetterStore(self.directory / "dead_letters")
        self._compression = compression
        self._lock = threading.Lock()
        self._dedup = DedupIndex(dedup_horizon_ms) if contract.id_column is not None else None
        self._watermark: int | None = None
        self._time_marks: list[tuple[int, int]] = []  # (segment end, newest event time below it)
        try:
            self._segments: list[Segment] = self._scan()
            self._rebuild_index()
        except BaseException:
            self.close()
            raise

    # -- opening ------------------------------------------------------------------------

    def _scan(self) -> list[Segment]:
        remove_temporary_files(self.log_directory)  # an ingest that crashed before its rename was never acknowledged
        segments = []
        for path in self.log_directory.iterdir():
            match = _SEGMENT.match(path.name)
            if match:
                segments.append(Segment(int(match.group(1)), int(match.group(2)), path))
        segments.sort(key=lambda segment: segment.begin)
        expected = 0
        for segment in segments:
            if segment.begin != expected or segment.end <= segment.begin:
                raise RuntimeError(f"master log {self.log_directory}: segment {segment.path.name} does not "
                                   f"start at offset {expected}; the log has a gap or an overlap")
            expected = segment.end
        if segments:
            with pa.memory_map(str(segments[0].path)) as source:
                stored = ipc.open_file(source).schema
            if not stored.equals(self.schema):
                raise RuntimeError(f"master log {self.log_directory} stores events of schema {stored.names}, "
                                   f"but the event contract says {self.schema.names}")
        return segments

    def _rebuild_index(self) -> None:
        """Dedup index and event-time watermark from the stored segments (reopening)."""
        time_column, id_column = self.contract.time_column, self.contract.id_column
        if time_column is None:
            return
        for segment in self._segments:
            table = read_segment(segment, [time_column] + ([id_column] if id_column else []))
            times = pc.cast(table.column(time_column), pa.int64()).to_numpy()
            self._advance_watermark(times, segment.end)
            if self._dedup is not None:
                self._dedup.add(EventIds.of(table.column(id_column)), times)

    def _advance_watermark(self, times: np.ndarray, end: int) -> None:
        if len(times):
            newest = int(times.max())
            self._watermark = newest if self._watermark is None else max(self._watermark, newest)
            self._time_marks.append((end, self._watermark))

    # -- reading ------------------------------------------------------------------------

    @property
    def max_event_time_ms(self) -> int | None:
        """The newest event time stored (epoch ms); None for an empty log or no time column."""
        return self._watermark

    def newest_time_below(self, offset: int) -> int | None:
        """The newest event time among the segments below ``offset`` (None when there is
        none): exact at segment ends, as every snapshot offset is."""
        marks = self._time_marks
        position = bisect.bisect_right(marks, (offset, 2**63)) - 1
        return marks[position][1] if position >= 0 else None

    @property
    def dedup_entries(self) -> int:
        """(id, time) entries the dedup index holds (0 without an id column)."""
        return self._dedup.entries() if self._dedup is not None else 0

    @property
    def end_offset(self) -> int:
        """The offset the next stored event gets (= number of events stored)."""
        segments = self._segments
        return segments[-1].end if segments else 0

    def segments(self, begin: int = 0, end: int | None = None) -> list[Segment]:
        """Segments overlapping offsets ``[begin, end)`` (``end=None``: to the log's end)."""
        segments = list(self._segments)
        end = segments[-1].end if end is None and segments else (end or 0)
        return [segment for segment in segments if segment.end > begin and segment.begin < end]

    def read(self, begin: int = 0, end: int | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """Stored events with offsets in ``[begin, end)`` as one table (``offset`` + contract)."""
        end = self.end_offset if end is None else end
        tables = list(self.iter_tables(begin, end, columns))
        schema = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def iter_tables(self, begin: int, end: int, columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
        """One table per segment for offsets ``[begin, end)``, trimmed at both ends."""
        for segment in self.segments(begin, end):
            table = read_segment(segment)
            if segment.begin < begin or segment.end > end:
                table = table.slice(max(0, begin - segment.begin), min(end, segment.end) - max(begin, segment.begin))
            yield table.select(list(columns)) if columns is not None else table

    # -- writing ------------------------------------------------------------------------

    def ingest(self, batch: pa.Table | pa.RecordBatch) -> tuple[IngestAck, pa.Table]:
        """Validate, de-duplicate and durably append ``batch``.

        Returns the acknowledgement and the stored rows (with offsets), which the caller
        may hand to the speed layer.  Raises ``ValueError`` for a batch that does not have
        the contract's columns.
        """
        valid, rejected = split_batch(self.contract, batch)
        ids = EventIds.of(valid.column(self.contract.id_column)) if self._dedup is not None else None
        with self._lock:
            valid, ids, times, implausible = self._check_times(valid, ids)
            is_duplicate = (self._dedup.duplicates(ids, times) if self._dedup is not None and ids is not None
                            else np.zeros(valid.num_rows, dtype=bool))
            keep = ~is_duplicate
            stored = valid.filter(pa.array(keep)) if is_duplicate.any() else valid
            begin = self.end_offset
            end = begin + stored.num_rows
            offsets = pa.array(np.arange(begin, end, dtype=np.int64))
            stored = stored.add_column(0, self.schema.field(OFFSET), offsets)
            parts = [rejected]
            if implausible is not None:
                merged = merge_rejected(rejected, implausible)
                parts = [merged] if merged is not None else [rejected, implausible]
            letters = [self._store_rejected(part, begin) for part in parts if part.num_rows]
            if stored.num_rows:
                segment = self._write_segment(stored, begin, end)
                if times is not None:
                    self._advance_watermark(times[keep], end)
                if self._dedup is not None and ids is not None:
                    self._dedup.add(ids.take(keep), times[keep])
                self._segments = self._segments + [segment]
        ack = IngestAck(begin, end, stored.num_rows, int(is_duplicate.sum()), sum(part.num_rows for part in parts),
                        letters[0] if letters else None)
        return ack, stored

    def _check_times(self, valid: pa.Table, ids: EventIds | None) -> tuple[pa.Table, EventIds | None,
                                                                            np.ndarray | None, pa.Table | None]:
        """(plausible rows, their ids, their epoch-ms times, implausible rows with a reason
        or None): a null event time or one outside the window is rejected."""
        name = self.contract.time_column
        if name is None:
            return valid, ids, None, None
        column = pc.cast(valid.column(name), pa.int64())
        present = np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)
        times = np.asarray(column.fill_null(0).to_numpy(), dtype=np.int64)
        if self._time_window is not None:
            reasons = self._time_window.reasons(times, self._watermark, int(self._clock() * 1000))
        else:
            reasons = pa.nulls(valid.num_rows, pa.string())
        if not present.all():
            reasons = pc.if_else(pa.array(~present), pa.scalar(f"missing {name}"), reasons)
        bad = np.asarray(pc.is_valid(reasons).to_numpy(zero_copy_only=False), dtype=bool)
        if not bad.any():
            return valid, ids, times, None
        implausible = valid.filter(pa.array(bad)).append_column(REASON, pc.filter(reasons, pa.array(bad)))
        keep = ~bad
        return valid.filter(pa.array(keep)), ids.take(keep) if ids is not None else None, times[keep], implausible

    def _store_rejected(self, rejected: pa.Table, at_offset: int) -> str:
        reasons = pc.value_counts(rejected.column(REASON)).to_pylist()
        summary = ", ".join(f"{item['counts']} {item['values']}" for item in reasons[:10])
        if len(reasons) > 10:
            summary += f", and {len(reasons) - 10} more reasons"
        return self.dead_letters.add(INGEST_STAGE, rejected, f"rejected rows: {summary}",
                                     source={"log_end_offset": at_offset}, pattern="lambda")

    def _write_segment(self, table: pa.Table, begin: int, end: int) -> Segment:
        final = self.log_directory / f"seg-{begin:016d}-{end:016d}.arrow"
        write_ipc_atomically(final, table.cast(self.schema) if table.schema != self.schema else table, self.schema,
                             self._compression)
        return Segment(begin, end, final)

    def rejected_rows(self) -> pa.Table:
        """Every row ever rejected by ingest, with its ``reject_reason`` (from the dead letters)."""
        letters = self.dead_letters.list(step=INGEST_STAGE, include_replayed=True)
        tables = [self.dead_letters.rows(letter_id) for letter_id in letters.column("letter_id").to_pylist()]
        if tables:
            return pa.concat_tables(tables, promote_options="permissive")
        return pa.schema([pa.field(REASON, pa.string())]).empty_table()

    def close(self) -> None:
        """Release the directory lock (the log can then be opened by another process)."""
        if not self._lock_file.closed:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()

    def __enter__(self) -> "MasterLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
