"""Memory of a process tree read from ``/proc`` (no psutil needed): the processes under a
root, each one's RSS and PSS, and their sum with a breakdown per process title."""

from __future__ import annotations

import os
from typing import Any


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant (from ``/proc/*/stat``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending += children.get(pid, [])
    return tree


def memory_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) bytes of one process (``/proc/<pid>/smaps_rollup``); (0, 0) once gone."""
    sizes = {"Rss:": 0, "Pss:": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                parts = line.split()
                if parts and parts[0] in sizes:
                    sizes[parts[0]] = int(parts[1]) * 1024
    except OSError:
        pass
    return sizes["Rss:"], sizes["Pss:"]


def process_name(pid: int) -> str:
    """A process's title (Ray names its workers ``ray::<actor class>``), at most 40 characters."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().split(b"\0")
    except OSError:
        return "?"
    title = words[0].decode("utf-8", "replace").strip()
    return os.path.basename(title.split()[0])[:40] if title else "?"


def tree_memory(root: int) -> dict[str, Any]:
    """Summed RSS and PSS of the process tree under ``root``, its size, root's own RSS,
    and the RSS per process title (summed over processes of one title)."""
    pids = process_tree(root)
    sizes = [memory_of(pid) for pid in pids]
    by_title: dict[str, int] = {}
    for pid, (rss, _) in zip(pids, sizes):
        title = "driver" if pid == root else process_name(pid)
        by_title[title] = by_title.get(title, 0) + rss
    return {"rss": sum(s[0] for s in sizes), "pss": sum(s[1] for s in sizes), "processes": len(pids),
            "driver_rss": sizes[0][0], "rss_by_process": by_title}


# -- the stream -----------------------------------------------------------------------------
