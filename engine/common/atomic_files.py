"""The engine's one way to write a file: to a temporary name beside it, then rename.

A reader sees either no file or the complete file, never a torn one; a re-executed task
that writes the same name replaces the file instead of adding a second one.  With
``durable=True`` (the default) the file and the rename are fsynced, so once a write
function returns the file survives a crash of the process or the machine.

Every pattern writes through these functions: MapReduce parts, ``_SUCCESS`` and job
summaries, snapshots, pipeline sink parts, dead letters, the Lambda log's segments and
its batch views.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

TEMP_PREFIX = ".tmp-"


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file these functions write (left by a crash)."""
    return name.startswith(TEMP_PREFIX)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], durable: bool = True,
                sync_directory: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit rename it to ``path``.

    Whatever the block writes to the temporary path becomes ``path`` atomically; if the
    block raises, the temporary file is removed and ``path`` is untouched.  With
    ``sync_directory=False`` a durable write fsyncs the file but not the rename: the caller
    fsyncs the directory once for many files (``fsync_directory``) before it relies on them.
    """
    final = Path(path)
    temporary = final.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex[:12]}-{final.name}")
    try:
        yield temporary
        if durable:
            _fsync_file(temporary)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable and sync_directory:
        fsync_directory(final.parent)


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], None], durable: bool = True,
                     sync_directory: bool = True) -> None:
    """Create or replace ``path`` with what ``write(file)`` writes, atomically."""
    with atomic_path(path, durable, sync_directory) as temporary, open(temporary, "wb") as handle:
        write(handle)


def write_bytes_atomically(path: str | os.PathLike[str], data: bytes, durable: bool = True,
                           sync_directory: bool = True) -> None:
    """Create or replace ``path`` with ``data``, atomically."""
    write_atomically(path, lambda handle: handle.write(data), durable, sync_directory)


def write_json_atomically(path: str | os.PathLike[str], document: object, durable: bool = True,
                          indent: int | None = None, sync_directory: bool = True) -> None:
    """Write ``document`` as UTF-8 JSON (keys sorted) to ``path``, atomically."""
    separators = None if indent else (",", ":")
    payload = json.dumps(document, sort_keys=True, indent=indent, separators=separators).encode("utf-8")
    write_bytes_atomically(path, payload, durable, sync_directory)


def write_parquet_atomically(path: str | os.PathLike[str], table: pa.Table, durable: bool = True,
                             sync_directory: bool = True, **options: object) -> None:
    """Write ``table`` as a Parquet file at ``path``, atomically (``options`` go to
    ``pyarrow.parquet.write_table``; ``sync_directory`` as in ``atomic_path``)."""
    with atomic_path(path, durable, sync_directory) as temporary:
        pq.write_table(table, str(temporary), **options)  # type: ignore[arg-type]


def write_ipc_atomically(path: str | os.PathLike[str], table: pa.Table, schema: pa.Schema | None = None,
                         compression: str | None = None, durable: bool = True) -> None:
    """Write ``table`` as an Arrow IPC file at ``path``, atomically."""
    options = ipc.IpcWriteOptions(compression=compression)
    with atomic_path(path, durable) as temporary, pa.OSFile(str(temporary), "wb") as sink:
        with ipc.new_file(sink, schema or table.schema, options=options) as writer:
            writer.write_table(table)


def remove_temporary_files(directory: str | os.PathLike[str]) -> int:
    """Delete temporary files a crashed writer left in ``directory``; returns how many."""
    removed = 0
    root = Path(directory)
    if not root.is_dir():
        return 0
    for entry in root.iterdir():
        if is_temporary(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename or creation inside ``directory`` durable (no-op where unsupported)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
