"""Turning whatever a handle reports into plain, bounded, JSON-safe data.

Status and metrics dicts come from several patterns that are still changing, so nothing
here assumes their shape: dataclasses (``StageMetrics``), enums, numpy scalars, sets,
tuples and ``Counter``s become dicts, lists, numbers and strings; NaN and infinities
become ``None`` (``JSON.parse`` rejects them); long strings and lists are cut, and deep
nesting is summarised, so one odd value can neither break nor flood the page.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections.abc import Mapping
from typing import Any

MAX_STRING = 4000
MAX_ITEMS = 5000
MAX_DEPTH = 8


def to_plain(value: Any, depth: int = 0, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON-safe copy of ``value`` (see the module docstring for the rules); containers
    nested deeper than ``max_depth`` are replaced by their type name."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value if len(value) <= MAX_STRING else value[:MAX_STRING] + "…"
    if isinstance(value, enum.Enum):
        return to_plain(value.value, depth, max_depth)
    if isinstance(value, bytes):
        return to_plain(value.decode("utf-8", "replace"), depth, max_depth)
    if depth >= max_depth:
        return to_plain(f"<{type(value).__name__}>", depth, max_depth)
    if hasattr(value, "item") and callable(value.item) and type(value).__module__ == "numpy":
        try:
            return to_plain(value.item(), depth, max_depth)
        except (TypeError, ValueError):
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_ITEMS]
        return {str(key): to_plain(item, depth + 1, max_depth) for key, item in items}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else list(value)
        return [to_plain(item, depth + 1, max_depth) for item in items[:MAX_ITEMS]]
    return to_plain(repr(value), depth, max_depth)


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def dumps(document: Any) -> bytes:
    """``document`` as UTF-8 JSON with ``<``, ``>`` and ``&`` escaped (``\\u003c`` ...), so
    the text stays inert even if a browser were made to read it as HTML."""
    text = json.dumps(to_plain(document, max_depth=4 * MAX_DEPTH), allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode("utf-8")
