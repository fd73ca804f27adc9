"""Replaying dead letters: claims, the replay loop, and the exactly-once replay into a sink.

Used by ``DeadLetterStore.replay``/``replay_exactly_once``/``replay_into`` (its only
callers).  A replayer claims a letter exclusively (``<letter_id>.claim``), delivers its
rows, then writes the ``<letter_id>.replayed.json`` marker.  A crash between the delivery
and the marker is the one hole of a plain callback (its rows are delivered again next
time: at-least-once).  A sink that commits each batch atomically under a stable name
closes it: the replayed rows are committed under a name derived from the letter id alone
(``replay_batch_name``), so the sink's commit *is* the replay's commit point; the marker
follows from it, and a later replay that finds the batch committed only writes the marker.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pyarrow as pa

from engine.common.atomic_files import write_json_atomically

if TYPE_CHECKING:
    from engine.common.dead_letters import DeadLetterStore
    from engine.io.sinks import Sink

REPLAYED_SUFFIX = ".replayed.json"
CLAIM_SUFFIX = ".claim"


@dataclass
class ReplayReport:
    """What one replay did.

    ``replayed_letters``/``replayed_rows`` count the letters and rows delivered by this
    replay (their ids in ``replayed_ids``); ``recovered_ids`` are letters an earlier,
    interrupted replay had already committed to the sink, which this one only marked;
    ``failed_letters`` lists ``(letter_id, error message)`` for letters whose replay failed
    and that stay in the store; ``skipped_letters`` are letters another replayer holds.
    """

    replayed_letters: int = 0
    replayed_rows: int = 0
    failed_letters: list[tuple[str, str]] = field(default_factory=list)
    replayed_ids: list[str] = field(default_factory=list)
    skipped_letters: list[str] = field(default_factory=list)
    recovered_ids: list[str] = field(default_factory=list)


def replay_batch_name(letter_id: str) -> str:
    """The stable sink batch name of a replayed letter: derived from its id alone (a safe
    part name of at most 128 characters)."""
    name = f"replay-{letter_id}"
    return name if len(name) <= 128 else "replay-" + hashlib.sha256(letter_id.encode("utf-8")).hexdigest()[:32]


def replay_letters(store: "DeadLetterStore", step: str, deliver: Callable[[str, pa.Table], None],
                   committed: Callable[[str], bool] | None) -> ReplayReport:
    """Deliver each not-yet-replayed letter of ``step`` (oldest first) and mark it replayed.

    ``deliver(letter_id, rows)`` raising leaves the letter in the store (reported failed).
    With ``committed``, a letter for which ``committed(letter_id)`` is true is not delivered
    again, only marked.
    """
    report = ReplayReport()
    for letter_id in store.list(step).column("letter_id").to_pylist():
        claim = store.directory / f"{letter_id}{CLAIM_SUFFIX}"
        if not take_claim(claim, store.claim_timeout_s):
            report.skipped_letters.append(letter_id)
            continue
        try:
            marker = store.directory / f"{letter_id}{REPLAYED_SUFFIX}"
            if marker.exists():
                continue  # finished by another replayer since we listed
            if committed is not None and committed(letter_id):
                _mark(marker, letter_id)
                report.recovered_ids.append(letter_id)
                continue
            try:
                rows = store.rows(letter_id)
                deliver(letter_id, rows)
            except Exception as exc:  # the replay function's failure is data here
                report.failed_letters.append((letter_id, f"{type(exc).__name__}: {exc}"))
                continue
            _mark(marker, letter_id)
            report.replayed_letters += 1
            report.replayed_rows += rows.num_rows
            report.replayed_ids.append(letter_id)
        finally:
            claim.unlink(missing_ok=True)
    return report


def replay_into(store: "DeadLetterStore", step: str, sink: "Sink",
                transform: Callable[[pa.Table], pa.Table | None] | None = None) -> ReplayReport:
    """Replay the letters of ``step`` into ``sink`` exactly once (see the module docstring).

    ``sink`` must have ``stable_commits`` (a ``ParquetSink``); it is opened with
    ``resume=True``, so the parts already in it stay.  ``transform(rows)`` (default: the
    rows as they are) gives what to write; ``None`` or no rows writes nothing.
    """
    if not getattr(sink, "stable_commits", False):
        raise ValueError(f"replay_into needs a sink with stable batch commits (a ParquetSink), got "
                         f"{type(sink).__name__}; replay(step, fn) into a callback is at-least-once")
    writer = sink.open(resume=True)
    done = writer.committed()

    def deliver(letter_id: str, rows: pa.Table) -> None:
        table = rows if transform is None else transform(rows)
        if table is not None and table.num_rows:
            writer.write(replay_batch_name(letter_id), table)

    report = replay_letters(store, step, deliver, lambda letter_id: replay_batch_name(letter_id) in done)
    writer.close()
    return report


def take_claim(path: Path, timeout_s: float) -> bool:
    """Take the exclusive replay claim at ``path``, taking over a stale one: older than
    ``timeout_s``, or held by a process of this host that no longer exists."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                age = time.time() - path.stat().st_mtime
            except FileNotFoundError:
                continue  # released meanwhile: try again
            if age <= timeout_s and not _holder_is_gone(path):
                return False
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "claimed_at": time.time()}))
        return True
    return False


def _holder_is_gone(path: Path) -> bool:
    """True if the claim names a process of this host that has exited."""
    try:
        holder = json.loads(path.read_text())
        pid, host = holder["pid"], holder["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return False  # unreadable or from an older writer: only its age decides
    if host != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def _mark(marker: Path, letter_id: str) -> None:
    write_json_atomically(marker, {"letter_id": letter_id, "replayed_at_ms": time.time_ns() // 1_000_000})
