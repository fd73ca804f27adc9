"""Durable, atomic small-file writes: write a temporary file, fsync, rename, fsync the directory.

A reader sees either no file or the complete file, never a torn one, and once a write
function returns the file survives a crash of the process or the machine.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Callable, BinaryIO

TEMP_PREFIX = ".tmp-"


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Create or replace ``path`` with what ``write(file)`` writes, atomically and durably."""
    tmp = path.with_name(f"{TEMP_PREFIX}{uuid.uuid4().hex}-{path.name}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_json_atomically(path: Path, document: object) -> None:
    """Write ``document`` as UTF-8 JSON to ``path`` via :func:`write_atomically`."""
    payload = json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")
    write_atomically(path, lambda fh: fh.write(payload))


def fsync_directory(directory: Path) -> None:
    """Make a rename or creation inside ``directory`` durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
