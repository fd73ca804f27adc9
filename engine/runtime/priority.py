"""Running work at a lower OS priority, one thread at a time.

On Linux every thread has its own nice value, so a thread can lower its own priority
without touching the rest of its process.  An unprivileged process cannot raise it back,
so the lowered work runs in a thread of its own that ends with it: the caller's thread,
and the worker process's later tasks, keep their priority.  Elsewhere (no per-thread
priority) the work runs unchanged.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def lower_this_thread(steps: int) -> bool:
    """Lower the calling thread's priority by ``steps`` nice steps (Linux); True if done.
    Irreversible without privileges: call it only in a thread that ends with the work."""
    if steps <= 0 or not sys.platform.startswith("linux"):
        return False
    thread = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread, min(19, os.getpriority(os.PRIO_PROCESS, thread) + steps))
    except OSError:
        return False
    return True


def call_at_lower_priority(steps: int, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` run in a new thread lowered by ``steps`` nice steps;
    returns its result or raises its exception.  ``steps <= 0`` calls it directly."""
    if steps <= 0:
        return function(*args, **kwargs)
    outcome: dict[str, Any] = {}

    def body() -> None:
        lower_this_thread(steps)
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as error:  # handed to the caller's thread
            outcome["error"] = error

    worker = threading.Thread(target=body, name="lowered-priority", daemon=True)
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
