"""Input splits: the unit of work of one map task, as plain JSON-safe data.

Sources (``engine.io.sources``) plan them: text files split into byte ranges (a split
owns every line that *starts* inside its range, Hadoop's rule, so adjacent splits meet
exactly and no line is lost or read twice), Parquet files by row group, in-memory tables
by row ranges.
"""

from __future__ import annotations

import glob
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable


from engine.errors import InputNotFoundError


@dataclass(frozen=True)
class InputSplit:
    """One map task's input: ``kind`` is "text", "parquet", "table", "dead-letters",
    "arrow-row-group", "arrow-fragment" or "ray-block".

    For text, ``start``/``end`` are byte offsets; for parquet, ``start`` is the row group;
    for tables, ``index`` is the table and ``start``/``end`` are row offsets; for Arrow
    datasets, ``index`` is the fragment (``path`` its file) and ``start`` a row group;
    for Ray Datasets, ``index`` is the block.
    """

    kind: str
    path: str
    start: int
    end: int
    index: int = 0

    def to_json(self) -> dict:
        """A JSON-safe dict (for snapshots)."""
        return asdict(self)

    @staticmethod
    def from_json(data: dict) -> "InputSplit":
        """Inverse of ``to_json``."""
        return InputSplit(kind=str(data["kind"]), path=str(data["path"]), start=int(data["start"]),
                          end=int(data["end"]), index=int(data.get("index", 0)))

    def size_bytes(self) -> int:
        """Bytes of input for text splits (progress accounting); 0 otherwise."""
        return self.end - self.start if self.kind == "text" else 0


def expand_paths(paths: Iterable[str], suffixes: tuple[str, ...] = ()) -> list[str]:
    """Files named by paths, directories (recursively) and globs, sorted, de-duplicated.

    Raises ``InputNotFoundError`` naming the first path that matches nothing or names only
    directories without (matching) files.  Hidden
    files and Hadoop-style markers (``_SUCCESS``, ``.crc``) inside directories are skipped.
    """
    found: list[str] = []
    for raw in paths:
        matches = sorted(glob.glob(raw, recursive=True)) if glob.has_magic(raw) else [raw]
        if not matches or not any(os.path.exists(m) for m in matches):
            raise InputNotFoundError(f"input path does not exist: {raw}")
        before = len(found)
        for match in matches:
            if os.path.isdir(match):
                for root, dirs, files in os.walk(match):
                    dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                    for name in sorted(files):
                        if name.startswith((".", "_")) or name.endswith(".crc"):
                            continue
                        if suffixes and not name.endswith(suffixes):
                            continue
                        found.append(os.path.join(root, name))
            elif os.path.exists(match):
                found.append(match)
        if len(found) == before:
            kind = " or ".join(f"*{suffix}" for suffix in suffixes) + " " if suffixes else ""
            raise InputNotFoundError(f"input directory holds no {kind}files: {raw}")
    unique = list(dict.fromkeys(os.path.abspath(p) for p in found))
    return unique
