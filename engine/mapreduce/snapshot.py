"""Master snapshots: the task table and output locations, written atomically as JSON.

A snapshot is ``snapshot-<job>-<fingerprint prefix>-<seq>.json`` in the snapshot
directory (so several jobs can share one directory without pruning each other's
snapshots), holding the job name, the
fingerprint of its specification, a sequence number, the task table and the live
workers, plus a SHA-256 of that content.  Loading never unpickles anything; a file that
is corrupt or belongs to another job is refused with a clear message and the newest
good snapshot before it is used instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from engine.common.atomic_files import write_bytes_atomically
from engine.errors import SnapshotError

_PREFIX = "snapshot-"


@dataclass(frozen=True)
class Snapshot:
    """One loaded snapshot."""

    seq: int
    job: str
    fingerprint: str
    state: dict
    path: str


class SnapshotStore:
    """The snapshots of one job in one directory.  Keeps the newest ``keep`` files."""

    def __init__(self, directory: str, job: str, fingerprint: str, keep: int = 3) -> None:
        self.directory = directory
        self.job = job
        self.fingerprint = fingerprint
        self.keep = keep
        self.rejected: list[str] = []
        self.prefix = f"{_PREFIX}{re.sub(r'[^A-Za-z0-9_.]', '_', job)}-{fingerprint[:12]}-"

    def write(self, seq: int, state: dict) -> str:
        """Write snapshot ``seq`` atomically (temp file, fsync, rename) and prune old ones."""
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        body = {"job": self.job, "fingerprint": self.fingerprint, "seq": seq, "written_at": time.time(),
                "state": state}
        content = json.dumps(body, sort_keys=True, separators=(",", ":"))
        document = json.dumps({"sha256": hashlib.sha256(content.encode()).hexdigest(), "content": content})
        path = os.path.join(self.directory, f"{self.prefix}{seq:08d}.json")
        write_bytes_atomically(path, document.encode())
        for old in self._files()[:-self.keep]:
            try:
                os.unlink(old)
            except FileNotFoundError:
                pass
        return path

    def stale(self) -> list[str]:
        """Snapshot files of this job written for another fingerprint: its input files (their
        sizes or modification times) or its specification changed since."""
        if not os.path.isdir(self.directory):
            return []
        pattern = re.compile(re.escape(self.prefix[:-13]) + r"[0-9a-f]{12}-\d+\.json$")
        return sorted(os.path.join(self.directory, n) for n in os.listdir(self.directory)
                      if pattern.match(n) and not n.startswith(self.prefix))

    def _files(self) -> list[str]:
        if not os.path.isdir(self.directory):
            return []
        names = sorted(n for n in os.listdir(self.directory)
                       if n.startswith(self.prefix) and n.endswith(".json") and n[len(self.prefix):-5].isdigit())
        return [os.path.join(self.directory, n) for n in names]

    def read(self, path: str) -> Snapshot:
        """Load and verify one snapshot file; ``SnapshotError`` says what is wrong with it."""
        try:
            with open(path, "rb") as handle:
                document = json.loads(handle.read().decode("utf-8"))
            content = document["content"]
            if hashlib.sha256(content.encode()).hexdigest() != document["sha256"]:
                raise SnapshotError(f"snapshot {path} is corrupt: checksum mismatch")
            body = json.loads(content)
        except SnapshotError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise SnapshotError(f"snapshot {path} is corrupt or truncated: {error}") from None
        if body.get("job") != self.job or body.get("fingerprint") != self.fingerprint:
            raise SnapshotError(f"snapshot {path} belongs to job {body.get('job')!r} "
                                f"(fingerprint {str(body.get('fingerprint'))[:12]}), not to {self.job!r} "
                                f"(fingerprint {self.fingerprint[:12]})")
        return Snapshot(int(body["seq"]), body["job"], body["fingerprint"], body["state"], path)

    def latest(self) -> Snapshot | None:
        """The newest snapshot that verifies; refused files are listed in ``rejected``."""
        for path in reversed(self._files()):
            try:
                return self.read(path)
            except SnapshotError as error:
                self.rejected.append(str(error))
        return None

    def clear(self) -> None:
        """Remove this job's snapshot files (after the job succeeded), and the directory
        if nothing else is left in it."""
        for path in self._files():
            os.unlink(path)
        try:
            os.rmdir(self.directory)
        except OSError:
            pass


class SnapshotPolicy:
    """When a master writes a snapshot: once ``every_tasks`` completions were accepted
    since the last one, or ``every_s`` seconds passed since it with at least one
    completion, whichever comes first.  Nothing completed means nothing to write."""

    def __init__(self, every_tasks: int, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_tasks = max(1, int(every_tasks))
        self.every_s = every_s
        self.clock = clock
        self.pending = 0
        self.last = clock()

    def completed(self, count: int = 1) -> None:
        """``count`` more completions were accepted."""
        self.pending += count

    def due(self) -> bool:
        """True when a snapshot should be written now."""
        if self.pending == 0:
            return False
        return self.pending >= self.every_tasks or self.clock() - self.last >= self.every_s

    def written(self) -> None:
        """A snapshot holding every completion so far was written."""
        self.pending = 0
        self.last = self.clock()
