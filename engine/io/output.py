"""Writing a job's result: one Parquet part per reducer, atomically, then ``_SUCCESS``.

A part is written to a temporary name in the output directory and renamed into place, so
a reader never sees a torn file and a re-executed task replaces an identical part rather
than adding a duplicate.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from engine.errors import OutputExistsError

SUCCESS = "_SUCCESS"
DEAD_LETTERS = "_dead_letters.parquet"
_RESULT_FILES = (SUCCESS, DEAD_LETTERS, "_job.json")


def part_name(partition: int) -> str:
    """File name of a reduce partition's part."""
    return f"part-{partition:05d}.parquet"


def prepare_output(directory: str, overwrite: bool) -> None:
    """Create ``directory``; refuse (or with ``overwrite`` clear) an earlier result in it.

    Only files that a job writes are removed on overwrite; a directory holding anything
    else is refused rather than emptied.
    """
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output path exists and is not a directory: {directory}")
    path.mkdir(parents=True, exist_ok=True)
    entries = [e for e in path.iterdir()]
    ours = [e for e in entries if e.name in _RESULT_FILES or e.name.startswith(("part-", ".part-", "_snapshots"))]
    if not ours:
        return
    if not overwrite:
        raise OutputExistsError(f"output directory already holds a result: {directory} (use --overwrite to replace it)")
    others = [e.name for e in entries if e not in ours]
    if others:
        raise OutputExistsError(f"output directory holds files that are not a job result: {directory} ({others[0]})")
    for entry in ours:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def write_part(directory: str, partition: int, table: pa.Table) -> str:
    """Write ``table`` as ``part-NNNNN.parquet`` atomically and return its path.

    Dictionary encoding is off: parts hold sorted, mostly distinct keys, and plain pages
    are read value for value identically by pyarrow and fastparquet.
    """
    final = os.path.join(directory, part_name(partition))
    temporary = os.path.join(directory, f".{part_name(partition)}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, temporary, use_dictionary=False, compression="snappy")
    os.replace(temporary, final)
    return final


def write_atomic_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and rename."""
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_success(directory: str, summary: dict) -> None:
    """Write the job summary (``_job.json``) and then the empty ``_SUCCESS`` marker, last."""
    write_atomic_bytes(os.path.join(directory, "_job.json"), json.dumps(summary, indent=2, sort_keys=True).encode())
    write_atomic_bytes(os.path.join(directory, SUCCESS), b"")


def write_dead_letters(directory: str, table: pa.Table) -> str | None:
    """Write the job's dead letters (bad records) next to its parts; None when there are none."""
    if table.num_rows == 0:
        return None
    path = os.path.join(directory, DEAD_LETTERS)
    temporary = f"{path}.{uuid.uuid4().hex}.tmp"
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    return path


def read_output(directory: str) -> pa.Table:
    """The whole result of a finished job as one table, parts in partition order."""
    parts = sorted(p for p in os.listdir(directory) if p.startswith("part-") and p.endswith(".parquet"))
    tables = [pq.read_table(os.path.join(directory, p)) for p in parts]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables)
