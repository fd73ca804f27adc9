"""How far a MapReduce job is, from its status (shared by the Ray handle and the inline executor)."""

from __future__ import annotations


def progress_of(status: dict) -> float:
    """Fraction of a job done from its status: map bytes (or tasks) weigh 90%, reduces 10%."""
    if status.get("state") == "succeeded":
        return 1.0
    maps, reduces = status.get("maps"), status.get("reduces")
    if not maps or not reduces:
        return 0.0
    if status.get("bytes_total"):
        map_part = status["bytes_done"] / status["bytes_total"]
    else:
        map_part = maps["completed"] / max(1, sum(maps.values()))
    return 0.9 * map_part + 0.1 * reduces["completed"] / max(1, sum(reduces.values()))
