"""The ad-tech job: a Lambda deployment over ad events (views, clicks, purchases).

- ``events.py``: the event contract (schema, validation with reasons); ``times.py``: event
  times (timestamps, epoch ms, ISO-8601 strings) parsed row by row;
- ``views.py``: counts per advertiser-minute, distinct viewers, last-click attribution;
- ``queries.py``: ``ads_shown``, ``active_viewers``, ``roi``;
- ``app.py``: ``adtech_architecture`` (the spec) and the :class:`AdTech` wrapper;
- ``oracle.py`` / ``testing.py``: a plain-Python reference and test helpers;
- ``demo.py``: ``python -m jobs.adtech``, the live demo.

Names are imported lazily, so ``jobs.adtech.events`` (used by ``datasets.adevents``)
stays free of the engine.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AdTech": "jobs.adtech.app", "CONTRACT": "jobs.adtech.app", "adtech_architecture": "jobs.adtech.app",
    "AdEventOracle": "jobs.adtech.oracle", "EVENT_SCHEMA": "jobs.adtech.events",
    "validate_events": "jobs.adtech.events", "main": "jobs.adtech.demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jobs.adtech' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
