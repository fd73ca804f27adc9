"""Ending a command-line driver promptly (the example jobs' last step)."""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn


def exit_process(code: int) -> NoReturn:
    """End a command-line driver at once with status ``code``: flush its output, stop the
    status page, disconnect from Ray if connected (the embedded cluster stops with it; on a
    cluster it joined, the engine's pool stays, warm for the next job: README, "What stays
    on a cluster you joined") and exit without Python's interpreter teardown (most of a
    second with Ray, pyarrow and numba loaded; nothing is left to clean up by then).
    Imports Ray only if the driver already did."""
    try:
        if "engine.ui" in sys.modules:
            sys.modules["engine.ui"].stop_ui()
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            from engine.cluster import disconnect

            disconnect()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed pipe: nothing more can be said
                pass
        logging.shutdown()
        os._exit(code)
