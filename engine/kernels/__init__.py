"""Pure per-batch kernels over Arrow buffers: no scheduling, no I/O, no Ray.

Compiled with numba (``engine.kernels._jit``), each beside its plain numpy/Python
reference:

- ``count_words`` (``wordcount``): fused word split + count, exactly ``str.split()``;
  ``split_words`` / ``count_words_reference`` (``text``) are the numpy reference.
- ``hash_binary`` (``hashing``): stable 64-bit hash per string/binary value;
  ``hash_binary_reference`` is the plain-Python definition.
- ``first_invalid`` / ``bad_lines`` (``utf8``): UTF-8 validation of a byte block.
- ``sum_by_key`` / ``partition_by_hash`` (``aggregate``): compiled combine and hash
  partitioning of (string key, int64) tables (a proposal; the engine does not use them yet).
- ``find_duplicates`` / ``insert`` / ``keep_live`` (``idset``): an exact open-addressing
  set of byte-string ids with a time each (the Lambda log's de-duplication index).
- ``warm_up`` (``warmup``): compile or load every kernel before the first task.

Names are loaded on first use, so ``import engine`` does not import numba.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "count_words": "engine.kernels.text",
    "split_words": "engine.kernels.text",
    "count_words_reference": "engine.kernels.text",
    "hash_binary": "engine.kernels.hashing",
    "hash_binary_reference": "engine.kernels.hashing",
    "first_invalid": "engine.kernels.utf8",
    "bad_lines": "engine.kernels.utf8",
    "sum_by_key": "engine.kernels.aggregate",
    "partition_by_hash": "engine.kernels.aggregate",
    "warm_up": "engine.kernels.warmup",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine.kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
