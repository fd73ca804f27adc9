"""The dead-letter store: records that failed a step of a pattern, kept on disk with their
error, listable and replayable.  The only dead-letter store of the engine: MapReduce bad
records, pipeline dead rows and Lambda ingest rejects all become letters of this shape::

    pattern   "mapreduce" | "pipeline" | "lambda" (who wrote it)
    step      the step id: "read", "map", "reduce", a stage id, "ingest"
    source    where the rows came from (JSON: file, byte or row offsets, batch, task)
    error     type and message (and traceback text)
    rows      the failed rows as an Arrow table, original schema intact

Layout of the store's one directory (all writes atomic and fsynced; nothing pickled)::

    <letter_id>.arrow           the rows, Arrow IPC file (zstd), original schema intact
    <letter_id>.json            metadata sidecar; written after the rows, so its presence
                                is the commit point of a letter
    <letter_id>.replayed.json   marker: the letter was replayed successfully
    <letter_id>.claim           transient: a replay of the letter is in progress
                                (``engine.common.dead_letter_replay``: claims and replay)

``letter_id`` is ``<step>.<created_at_ns>.<16 hex>``: random hex, or a digest of the
writer's ``key`` so that adding the same keyed letter again (a re-executed task) keeps one.  Sidecars are immutable, so
:meth:`DeadLetterStore.list` reads each one once per store object and afterwards only
lists the directory: listing thousands of letters never opens their row files.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import hashlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import pyarrow as pa

from engine.common.atomic_files import TEMP_PREFIX, write_atomically, write_json_atomically
from engine.common.bad_records import ErrorDescription, describe_error
from engine.common.dead_letter_replay import CLAIM_SUFFIX, REPLAYED_SUFFIX, ReplayReport, replay_batch_name, \
    replay_into, replay_letters

if TYPE_CHECKING:
    from engine.io.sinks import Sink

__all__ = ["CLAIM_SUFFIX", "DeadLetter", "DeadLetterStore", "REPLAYED_SUFFIX", "ReplayReport", "check_step",
           "replay_batch_name"]

FORMAT = "dead-letter/2"
ROWS_SUFFIX = ".arrow"
META_SUFFIX = ".json"
PATTERNS = ("mapreduce", "pipeline", "lambda", "scatter_gather")
_STEP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_LETTER_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,127})\.(\d{19})\.([0-9a-f]{16})")

LIST_SCHEMA = pa.schema(
    [
        ("letter_id", pa.string()),
        ("pattern", pa.string()),
        ("step", pa.string()),
        ("error_type", pa.string()),
        ("error_message", pa.string()),
        ("source", pa.string()),
        ("attempts", pa.int64()),
        ("row_count", pa.int64()),
        ("created_at", pa.timestamp("ms", tz="UTC")),
        ("replayed", pa.bool_()),
    ]
)


@dataclass
class DeadLetter:
    """One dead letter before it is stored: the step, the failed rows, the error, where the
    rows came from (JSON-able) and how many attempts were made."""

    step: str
    rows: pa.Table
    error: ErrorDescription
    source: dict = field(default_factory=dict)
    attempts: int = 1


class DeadLetterStore:
    """A directory of dead letters: failed rows plus the pattern, step, error and source.

    Safe to use from several processes sharing the directory: each letter is its own
    files, written atomically; replay claims a letter exclusively before calling the
    replay function.  ``claim_timeout_s`` is how old a replay claim must be before it
    is treated as left behind by a crashed replayer and taken over.
    """

    def __init__(self, directory: str | os.PathLike[str], claim_timeout_s: float = 600.0) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"dead-letter store path {str(self.directory)!r} is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.claim_timeout_s = claim_timeout_s
        self._lock = threading.Lock()
        self._meta_cache: dict[str, dict[str, object]] = {}

    # -- writing -------------------------------------------------------------------

    def add(
        self,
        step: str,
        rows: pa.Table | pa.RecordBatch,
        error: BaseException | ErrorDescription | str,
        source: Mapping[str, object] | None = None,
        attempts: int = 1,
        pattern: str = "pipeline",
        key: str | None = None,
    ) -> str:
        """Store ``rows`` that failed ``step`` of ``pattern`` with ``error``; return the letter id.

        ``source`` is free-form JSON-able context (input file, offsets, batch id...);
        values JSON cannot represent are stored as their ``repr``.  With a ``key``, adding
        a letter of the same step and key again returns the existing letter instead of
        writing a second one.  The letter is durable when this returns.
        """
        check_step(step)
        if pattern not in PATTERNS:
            raise ValueError(f"dead-letter pattern must be one of {PATTERNS}, got {pattern!r}")
        if isinstance(rows, pa.RecordBatch):
            rows = pa.Table.from_batches([rows])
        if not isinstance(rows, pa.Table):
            raise ValueError(f"dead-letter rows must be a pyarrow Table or RecordBatch, got {type(rows).__name__}")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise ValueError(f"dead-letter attempts must be an int >= 0, got {attempts!r}")
        if source is not None and not isinstance(source, Mapping):
            raise ValueError(f"dead-letter source must be a mapping or None, got {type(source).__name__}")
        if key is not None:
            suffix = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
            existing = self._keyed(step, suffix)
            if existing is not None:
                return existing
        else:
            suffix = uuid.uuid4().hex[:16]
        created_ns = time.time_ns()
        letter_id = f"{step}.{created_ns:019d}.{suffix}"
        description = error if isinstance(error, ErrorDescription) else describe_error(error)
        meta: dict[str, object] = {
            "format": FORMAT,
            "letter_id": letter_id,
            "pattern": pattern,
            "step": step,
            "error_type": description.error_type,
            "error_message": description.message,
            "error_traceback": description.traceback,
            "source": json.dumps(dict(source or {}), sort_keys=True, default=repr),
            "attempts": attempts,
            "row_count": rows.num_rows,
            "created_at_ms": created_ns // 1_000_000,
        }
        write_atomically(self._path(letter_id, ROWS_SUFFIX), lambda fh: _write_ipc(fh, rows))
        write_json_atomically(self._path(letter_id, META_SUFFIX), meta)
        with self._lock:
            self._meta_cache[letter_id] = meta
        return letter_id

    def add_letter(self, letter: DeadLetter, pattern: str, key: str | None = None) -> str:
        """Store a ``DeadLetter`` (see ``add``); returns its letter id."""
        return self.add(letter.step, letter.rows, letter.error, letter.source, letter.attempts, pattern, key)

    def _keyed(self, step: str, suffix: str) -> str | None:
        """The committed letter of ``step`` whose id ends in ``suffix``, if any."""
        prefix, ending = f"{step}.", f".{suffix}{META_SUFFIX}"
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(prefix) and name.endswith(ending) and not name.endswith(REPLAYED_SUFFIX):
                    letter_id = name[: -len(META_SUFFIX)]
                    if _LETTER_RE.fullmatch(letter_id):
                        return letter_id
        return None

    # -- reading -------------------------------------------------------------------

    def list(self, step: str | None = None, include_replayed: bool = False) -> pa.Table:
        """One row per letter, oldest first, with the columns of ``LIST_SCHEMA``.

        Only letters not yet replayed unless ``include_replayed``.
        """
        if step is not None:
            check_step(step)
        metas, replayed = self._scan()
        chosen = [
            m
            for m in metas
            if (step is None or m["step"] == step)
            and (include_replayed or m["letter_id"] not in replayed)
        ]
        return pa.table(
            {
                "letter_id": [m["letter_id"] for m in chosen],
                "pattern": [m["pattern"] for m in chosen],
                "step": [m["step"] for m in chosen],
                "error_type": [m["error_type"] for m in chosen],
                "error_message": [m["error_message"] for m in chosen],
                "source": [m["source"] for m in chosen],
                "attempts": [m["attempts"] for m in chosen],
                "row_count": [m["row_count"] for m in chosen],
                "created_at": [m["created_at_ms"] for m in chosen],
                "replayed": [m["letter_id"] in replayed for m in chosen],
            },
            schema=LIST_SCHEMA,
        )

    def metadata(self, letter_id: str) -> dict[str, object]:
        """Everything recorded about a letter, including the error's traceback text."""
        meta = dict(self._read_meta(letter_id))
        meta["replayed"] = self._path(letter_id, REPLAYED_SUFFIX).exists()
        return meta

    def rows(self, letter_id: str) -> pa.Table:
        """The exact rows of a letter, with their original schema."""
        self._read_meta(letter_id)  # validates the id and that the letter is committed
        path = self._path(letter_id, ROWS_SUFFIX)
        try:
            with pa.OSFile(str(path), "rb") as fh:
                return pa.ipc.open_file(fh).read_all()
        except FileNotFoundError:
            raise KeyError(f"dead letter {letter_id!r} has no rows file {str(path)!r}") from None
        except pa.ArrowInvalid as exc:
            raise ValueError(f"dead-letter rows file {str(path)!r} is unreadable: {exc}") from None

    def count(self, step: str | None = None, include_replayed: bool = False) -> int:
        """The number of dead *rows* (not letters), of one step or all, not yet replayed."""
        listing = self.list(step, include_replayed=include_replayed)
        return int(sum(listing.column("row_count").to_pylist()))

    def steps(self) -> list[str]:
        """The steps that have letters not yet replayed, sorted."""
        return sorted(set(self.list().column("step").to_pylist()))

    def all_rows(self, step: str, include_replayed: bool = False) -> pa.Table | None:
        """The rows of every letter of ``step`` as one table (None when there is none)."""
        ids = self.list(step, include_replayed=include_replayed).column("letter_id").to_pylist()
        tables = [self.rows(letter_id) for letter_id in ids]
        return pa.concat_tables(tables, promote_options="permissive") if tables else None

    # -- replay ------------------------------------------------------------------------

    def replay(self, step: str, fn: Callable[[pa.Table], None]) -> ReplayReport:
        """Call ``fn(rows)`` for each not-yet-replayed letter of ``step``, oldest first.

        A letter whose ``fn`` returns is marked replayed (durably, before moving on) and
        is never handed out again, by this or any later store on the same directory.  A
        letter whose ``fn`` raises stays in the store and is reported in
        ``failed_letters``.  Letters claimed by a concurrent replayer are skipped.  This is
        at-least-once: a crash after ``fn`` returned and before the marker hands the rows
        out again next time (``replay_into`` a sink with stable commits is exactly-once).
        """
        check_step(step)
        return replay_letters(self, step, lambda letter_id, rows: fn(rows), None)

    def replay_exactly_once(self, step: str, deliver: Callable[[str, pa.Table], None],
                            committed: Callable[[str], bool]) -> ReplayReport:
        """Like ``replay``, exactly once into a sink that commits batches atomically by name.

        ``deliver(letter_id, rows)`` must commit the rows atomically under a name derived
        from the letter id alone (``replay_batch_name``); ``committed(letter_id)`` says
        whether that commit exists.  A letter found committed (an earlier replay died
        between its commit and its marker) is only marked, listed in ``recovered_ids``.
        """
        check_step(step)
        return replay_letters(self, step, deliver, committed)

    def replay_into(self, step: str, sink: "Sink",
                    transform: Callable[[pa.Table], pa.Table | None] | None = None) -> ReplayReport:
        """Replay the letters of ``step`` into a sink with stable commits (a ``ParquetSink``,
        opened with ``resume=True``) exactly once, each letter as the batch
        ``replay_batch_name(letter_id)``; ``transform(rows)`` gives what to write (default:
        the rows).  See ``engine.common.dead_letter_replay``."""
        check_step(step)
        return replay_into(self, step, sink, transform)

    def purge_replayed(self) -> int:
        """Delete the files of replayed letters; return how many letters were removed."""
        _, replayed = self._scan()
        for letter_id in replayed:
            # Sidecar first: without it the letter no longer exists for readers.
            for suffix in (META_SUFFIX, ROWS_SUFFIX, REPLAYED_SUFFIX):
                self._path(letter_id, suffix).unlink(missing_ok=True)
            with self._lock:
                self._meta_cache.pop(letter_id, None)
        return len(replayed)

    # -- internals -------------------------------------------------------------------

    def _path(self, letter_id: str, suffix: str) -> Path:
        return self.directory / f"{letter_id}{suffix}"

    def _scan(self) -> tuple[list[dict[str, object]], set[str]]:
        """All committed letters' metadata (oldest first) and the ids marked replayed."""
        letter_ids: list[str] = []
        replayed: set[str] = set()
        with os.scandir(self.directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(TEMP_PREFIX):
                    continue
                if name.endswith(REPLAYED_SUFFIX):
                    replayed.add(name[: -len(REPLAYED_SUFFIX)])
                elif name.endswith(META_SUFFIX):
                    letter_ids.append(name[: -len(META_SUFFIX)])
        metas = [self._read_meta(letter_id) for letter_id in letter_ids if _LETTER_RE.fullmatch(letter_id)]
        metas.sort(key=lambda m: (m["created_at_ms"], m["letter_id"]))
        return metas, replayed & set(letter_ids)

    def _read_meta(self, letter_id: str) -> dict[str, object]:
        if not isinstance(letter_id, str) or not _LETTER_RE.fullmatch(letter_id):
            raise ValueError(f"not a dead-letter id: {letter_id!r}")
        with self._lock:
            cached = self._meta_cache.get(letter_id)
        if cached is not None:
            return cached
        path = self._path(letter_id, META_SUFFIX)
        try:
            meta = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise KeyError(f"no dead letter {letter_id!r} in {str(self.directory)!r}") from None
        except ValueError as exc:
            raise ValueError(f"dead-letter metadata file {str(path)!r} is not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"dead-letter metadata file {str(path)!r} is not in format {FORMAT!r}")
        with self._lock:
            self._meta_cache[letter_id] = meta
        return meta

    def __getstate__(self) -> dict[str, object]:
        return {"directory": str(self.directory), "claim_timeout_s": self.claim_timeout_s}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["directory"], state["claim_timeout_s"])  # type: ignore[misc, arg-type]

    def __repr__(self) -> str:
        return f"DeadLetterStore({str(self.directory)!r})"


def check_step(step: object) -> str:
    """Return ``step`` if it is a valid step id (it becomes part of file names)."""
    if not isinstance(step, str) or not _STEP_RE.fullmatch(step):
        raise ValueError(
            f"invalid dead-letter step id {step!r}: use 1-128 letters, digits, '_', '-' "
            "or '.', starting with a letter or digit"
        )
    return step


def _write_ipc(fh: object, rows: pa.Table) -> None:
    options = pa.ipc.IpcWriteOptions(compression="zstd" if pa.Codec.is_available("zstd") else None)
    with pa.ipc.new_file(fh, rows.schema, options=options) as writer:
        writer.write_table(rows)
