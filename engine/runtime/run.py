"""``engine.run``: the one way to run any spec, on a named executor.

Each pattern package has an ``executors`` module with an ``EXECUTORS`` table from executor
name to a class whose ``start(spec, options)`` returns a ``Handle``.  Specs never import
their executors; this module maps a spec's type to its package and imports the executor
only when it is used.  There is no fallback from one executor to another.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from engine.errors import SpecError
from engine.runtime.handle import Handle
from engine.ui.registry import register as register_with_ui

EXECUTOR_NAMES = ("inline", "ray")

# spec class name -> module holding that pattern's EXECUTORS table
_PATTERNS = {
    "MapReduceJob": "engine.mapreduce.executors",
    "Pipeline": "engine.pipeline.executors",
    "ScatterGather": "engine.scatter_gather.executors",
    "LambdaArchitecture": "engine.lambda_arch.executors",
}


@dataclass(frozen=True)
class RunOptions:
    """How to run a spec (beyond the spec's own options).

    - ``resume``: continue a MapReduce job from its snapshot store (its driver went away).
    - ``chaos``: an ``engine.testing.ChaosPlan`` of faults to inject (tests, demos; Ray only).
    """

    resume: bool = False
    chaos: Any = None


def _pattern_module(spec: object) -> str:
    for klass in type(spec).__mro__:
        if klass.__name__ in _PATTERNS and klass.__module__.startswith("engine."):
            return _PATTERNS[klass.__name__]
    raise SpecError(f"engine.run needs a MapReduceJob, Pipeline, ScatterGather or LambdaArchitecture, "
                    f"got {type(spec).__name__}")


def run(spec: object, executor: str = "ray", *, resume: bool = False, chaos: Any = None) -> Handle:
    """Start ``spec`` on ``executor`` ("inline": in this process, no Ray, the oracle;
    "ray": on the connected Ray cluster) and return its handle at once."""
    if executor not in EXECUTOR_NAMES:
        raise SpecError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTOR_NAMES)}")
    module = importlib.import_module(_pattern_module(spec))
    handle = module.EXECUTORS[executor]().start(spec, RunOptions(resume=resume, chaos=chaos))
    register_with_ui(handle, spec, executor)  # no-op unless a status page runs (engine.ui)
    return handle
