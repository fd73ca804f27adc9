"""What a master taking over asks of the workers and the output directory a snapshot names.

``Takeover`` (pure) decides; these functions make the Ray calls and file checks it needs:
every worker the snapshot names is asked at once what it runs, has finished and holds, and
every reduce the snapshot records as committed is checked for its part on disk.
"""

from __future__ import annotations

import os
import time
from typing import Any

import ray

from engine.io.parts import part_name
from engine.mapreduce.takeover import Takeover
from engine.mapreduce.task_table import TaskState


def poll_candidates(takeover: Takeover, job_id: str, namespace: str, timeout_s: float) -> dict[str, Any]:
    """Ask every candidate worker of ``takeover`` for its attempts of ``job_id`` (all at once,
    then wait up to ``timeout_s`` in all), report each answer or silence to ``takeover``, and
    return the handles of the workers that answered."""
    asked: dict[str, tuple[Any, Any]] = {}
    for name in takeover.candidates:
        try:
            handle = ray.get_actor(name, namespace=namespace)
        except ValueError:  # gone
            takeover.worker_unreachable(name)
            continue
        asked[name] = (handle, handle.attempts.remote(job_id))
    deadline = time.monotonic() + timeout_s
    answered: dict[str, Any] = {}
    for name, (handle, ref) in asked.items():
        try:
            report = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
        except ray.exceptions.RayError:  # dead, or no answer in time
            takeover.worker_unreachable(name)
            continue
        answered[name] = handle
        takeover.worker_reported(name, report.running, report.finished, report.held)
    return answered


def check_committed_parts(takeover: Takeover, output: str) -> None:
    """Tell ``takeover`` of each reduce recorded as committed whose part is not in ``output``."""
    for task in takeover.scheduler.table.of_kind("reduce"):
        if task.state is TaskState.COMPLETED and not os.path.exists(os.path.join(output, part_name(task.index))):
            takeover.scheduler.output_missing(task.task_id)
