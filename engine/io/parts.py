"""The rules of a result directory: ``part-<name>.parquet`` files, a job summary, ``_SUCCESS``.

Shared by MapReduce outputs and pipeline ``ParquetSink``s (Hadoop/Spark convention):
parts are written atomically (``engine.common.atomic_files``), so a reader never sees a
torn part and a re-executed task replaces an identical part instead of adding one; the
empty ``_SUCCESS`` marker is written last.  Preparing a directory refuses one that
already holds a result, unless asked to replace it, and never deletes files that are not
part of a result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine.common.atomic_files import atomic_path, fsync_directory, is_temporary, remove_temporary_files, \
    write_json_atomically, write_parquet_atomically
from engine.errors import OutputExistsError, SpecError

SUCCESS = "_SUCCESS"
JOB_SUMMARY = "_job.json"
DEAD_LETTERS_DIR = "_dead_letters"
SNAPSHOTS_DIR = "_snapshots"
RUN_TOKEN = "_run.json"
_RESULT_NAMES = (SUCCESS, JOB_SUMMARY, DEAD_LETTERS_DIR, SNAPSHOTS_DIR, RUN_TOKEN, "_dead_letters.parquet")
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_PART_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def part_name(partition: int | str) -> str:
    """File name of a part: ``part-00003.parquet`` for reduce partition 3, or
    ``part-<name>.parquet`` for a named batch (names are checked to be safe file names)."""
    if isinstance(partition, int):
        return f"part-{partition:05d}.parquet"
    if not _PART_NAME.match(partition):
        raise SpecError(f"part name {partition!r} is not a safe file name")
    return f"part-{partition}.parquet"


def _is_result_entry(name: str) -> bool:
    return name in _RESULT_NAMES or name.startswith("part-") or is_temporary(name)


def prepare_directory(directory: str | os.PathLike[str], overwrite: bool) -> None:
    """Create ``directory``; refuse (or with ``overwrite`` clear) a result already in it.

    Only entries a result consists of are removed on overwrite; a directory that also
    holds anything else is refused rather than emptied.
    """
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output path exists and is not a directory: {directory}")
    path.mkdir(parents=True, exist_ok=True)
    entries = list(path.iterdir())
    ours = [e for e in entries if _is_result_entry(e.name)]
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


def reopen_directory(directory: str | os.PathLike[str]) -> None:
    """Reopen ``directory`` to add parts to the result in it (a resumed run, a replay):
    create it if missing, keep its parts, drop temporaries of writes that never committed
    and ``_SUCCESS`` (the result is being written again)."""
    path = Path(directory)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output path exists and is not a directory: {directory}")
    path.mkdir(parents=True, exist_ok=True)
    remove_temporary_files(path)
    clear_success(path)


def committed_names(directory: str | os.PathLike[str]) -> set[str]:
    """The names of the parts committed in ``directory`` (``part-<name>.parquet`` -> name)."""
    if not os.path.isdir(directory):
        return set()
    return {entry[len("part-"):-len(".parquet")] for entry in os.listdir(directory)
            if entry.startswith("part-") and entry.endswith(".parquet") and not is_temporary(entry)}


def run_token(directory: str | os.PathLike[str], fresh: bool) -> str:
    """The token of the run whose result ``directory`` holds: a new one (``fresh``), else the
    one recorded there (a new one if there is none).  A resumed run shares its earlier
    run's token; a run that replaced the result has its own."""
    path = Path(directory, RUN_TOKEN)
    if not fresh:
        try:
            token = json.loads(path.read_bytes()).get("run")
        except FileNotFoundError:
            token = None
        except (ValueError, AttributeError) as exc:
            raise OutputExistsError(f"run token file {str(path)!r} is unreadable: {exc}") from None
        if isinstance(token, str) and _TOKEN.match(token):
            return token
        if token is not None:
            raise OutputExistsError(f"run token file {str(path)!r} holds no run token")
    token = uuid.uuid4().hex
    write_json_atomically(path, {"run": token})
    return token


def write_part(directory: str | os.PathLike[str], partition: int | str, table: pa.Table,
               compression: str = "snappy", sync_directory: bool = True) -> str:
    """Write ``table`` as the part of ``partition`` atomically and return its path.

    Dictionary encoding is off: parts hold sorted, mostly distinct keys, and plain pages
    are read value for value identically by pyarrow and fastparquet.  With
    ``sync_directory=False`` the part's data is fsynced but its name is made durable only
    by the directory fsync of ``write_success`` (one for all the parts of a job).
    """
    final = os.path.join(os.fspath(directory), part_name(partition))
    write_parquet_atomically(final, table, sync_directory=sync_directory, use_dictionary=False,
                             compression=compression)
    return final


def write_success(directory: str | os.PathLike[str], summary: dict | None = None) -> None:
    """Write the summary (``_job.json``, if given) and then the empty ``_SUCCESS``, last.

    One directory fsync makes the parts' and the summary's names durable before
    ``_SUCCESS`` exists, and a second makes ``_SUCCESS`` durable; the empty ``_SUCCESS``
    has no data to fsync.
    """
    directory = os.fspath(directory)
    if summary is not None:
        write_json_atomically(os.path.join(directory, JOB_SUMMARY), summary, indent=2, sync_directory=False)
    fsync_directory(directory)
    with atomic_path(os.path.join(directory, SUCCESS), durable=False) as temporary:
        temporary.write_bytes(b"")
    fsync_directory(directory)


def clear_success(directory: str | os.PathLike[str]) -> None:
    """Remove ``_SUCCESS`` (a directory being written is not a finished result)."""
    Path(directory, SUCCESS).unlink(missing_ok=True)


def part_files(directory: str | os.PathLike[str]) -> list[str]:
    """The part files of a result directory, sorted by name."""
    names = sorted(p for p in os.listdir(directory) if p.startswith("part-") and p.endswith(".parquet"))
    return [os.path.join(os.fspath(directory), name) for name in names]


def read_parts(directory: str | os.PathLike[str]) -> pa.Table:
    """Every part of a result directory as one table, parts in name order."""
    # ParquetFile, not read_table: one file needs no pyarrow.dataset (nor the pandas it
    # imports: half a second of a small job's command line)
    tables = [pq.ParquetFile(path).read() for path in part_files(directory)]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables)
