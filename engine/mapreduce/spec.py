"""The MapReduce job description: inert, validated data that executors run.

A ``MapReduceJob`` says what to compute (a splittable source, map, optional combine,
reduce, key columns, reducer count, output directory); ``JobOptions`` says how (workers,
fault tolerance settings).  Neither starts anything.  The same job runs inline and on
Ray: ``engine.run(job, executor="inline" | "ray")``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import pyarrow as pa
from engine.common.combine import KeyedCombineFn
from engine.common.retry import RetryPolicy
from engine.errors import SpecError
from engine.io.sinks import ParquetSink
from engine.io.sources import SplittableSource

BatchFunction = Callable[[pa.Table], pa.Table]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

@dataclass(frozen=True)
class JobOptions:
    """How a job runs.  Every field has a default that follows the cluster.

    - ``workers``: worker processes (actors); ``slots_per_worker``: tasks each runs at once,
      reserving a CPU per slot.  Default: on a one-node cluster one worker with a slot per
      CPU (as a Spark executor has a task slot per core: one process start, one load of
      the compiled kernels, map outputs shuffled within the process); on several nodes one
      single-slot worker per CPU.  ``workers`` given (or a fault plan naming workers by
      number): that many, one slot each unless ``slots_per_worker`` says otherwise.
    - ``start_with_workers``: how many of them must be ready before the first task is
      scheduled (default 1: the first map starts on the first warm worker, the others join
      as they finish starting; None: all of them, as Spark's
      ``spark.scheduler.minRegisteredResourcesRatio=1``).  A job with a fault plan naming
      workers always waits for all of them.
    - ``max_task_attempts``: attempts of one task before its failure fails the job or,
      for deterministic user-code errors, before bad-record skipping starts.
    - ``heartbeat_interval_s`` / ``heartbeat_timeout_s``: how often the master pings
      workers and how long an unanswered ping may wait before the worker counts as failed.
    - ``speculation``: launch backup attempts of stragglers near the end of a phase, once
      ``speculation_after`` of the phase's tasks are done, for tasks running longer than
      ``speculation_min_s`` and 1.5x the phase's median task time.
    - ``snapshot_dir``: where the master writes snapshots (default: under the output dir);
      ``snapshot_every_s`` / ``snapshot_every_tasks``: how often.
    - ``backup_master``: run a standby master that takes over if the primary dies.
    - ``max_bad_record_fraction``: skipped records above this fraction of input records
      fail the job; ``bad_record_attempts``: tries of a failing record before skipping it.
    - ``retry``: how user code's transient errors (``TransientError``) are retried; a task
      whose transient errors outlast it fails, and the master runs it again.
    - ``overwrite``: replace an output directory that already holds a result.
    - ``progress``: show a progress bar while waiting on ``result()``.
    - ``nice``: run the job's map and reduce tasks this many OS nice steps lower (0-19;
      Linux, per thread, on the Ray executor's workers), so a background job such as the
      Lambda batch layer yields CPU to serving work on the same cores.
    """

    workers: int | None = None
    slots_per_worker: int | None = None
    start_with_workers: int | None = 1
    max_task_attempts: int = 4
    heartbeat_interval_s: float = 0.5
    heartbeat_timeout_s: float = 10.0
    speculation: bool = True
    speculation_after: float = 0.75
    speculation_min_s: float = 1.0
    snapshot_dir: str | None = None
    snapshot_every_s: float = 2.0
    snapshot_every_tasks: int = 8
    backup_master: bool = True
    max_bad_record_fraction: float = 0.01
    bad_record_attempts: int = 2
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=6, base_delay_s=0.01, max_delay_s=1.0))
    overwrite: bool = False
    progress: bool = False
    nice: int = 0

    def validate(self) -> None:
        """Raise ``SpecError`` naming the first bad option."""
        if isinstance(self.nice, bool) or not isinstance(self.nice, int) or not 0 <= self.nice <= 19:
            raise SpecError(f"nice must be an int within [0, 19], got {self.nice!r}")
        if self.workers is not None and self.workers < 1:
            raise SpecError(f"workers must be at least 1, got {self.workers}")
        if self.slots_per_worker is not None and (isinstance(self.slots_per_worker, bool)
                                                  or not isinstance(self.slots_per_worker, int)
                                                  or self.slots_per_worker < 1):
            raise SpecError(f"slots_per_worker must be None or an int of at least 1, got {self.slots_per_worker!r}")
        if self.start_with_workers is not None and (not isinstance(self.start_with_workers, int)
                                                    or self.start_with_workers < 1):
            raise SpecError(f"start_with_workers must be None or at least 1, got {self.start_with_workers!r}")
        if self.max_task_attempts < 1:
            raise SpecError(f"max_task_attempts must be at least 1, got {self.max_task_attempts}")
        if self.heartbeat_interval_s <= 0 or self.heartbeat_timeout_s <= 0:
            raise SpecError("heartbeat_interval_s and heartbeat_timeout_s must be positive")
        if not 0.0 <= self.speculation_after <= 1.0:
            raise SpecError(f"speculation_after must be within [0, 1], got {self.speculation_after}")
        if not 0.0 <= self.max_bad_record_fraction <= 1.0:
            raise SpecError(f"max_bad_record_fraction must be within [0, 1], got {self.max_bad_record_fraction}")
        if self.bad_record_attempts < 1:
            raise SpecError(f"bad_record_attempts must be at least 1, got {self.bad_record_attempts}")
        if not isinstance(self.retry, RetryPolicy):
            raise SpecError(f"retry must be a RetryPolicy, got {type(self.retry).__name__}")


@dataclass(frozen=True)
class MapReduceJob:
    """A MapReduce job: ``map`` each input batch, optionally ``combine`` map-side, shuffle
    rows by ``keys`` into ``reducers`` partitions, ``reduce`` each partition, and write it.

    - ``map(table) -> table`` gets a batch of input rows and returns rows that contain the
      ``keys`` columns.
    - ``combine(table) -> table`` (optional) pre-aggregates a map task's output; it must
      be the same kind of aggregation as ``reduce`` (sum of sums, ...).
    - ``reduce(table) -> table`` gets *all* rows of one partition (many keys) and returns
      the aggregated rows; the engine sorts them by ``keys``.
    - ``output``: a directory that receives ``part-NNNNN.parquet`` (one per reducer, rows
      sorted by key, no key in two parts) and an empty ``_SUCCESS`` written last; ``None``
      keeps the result in a temporary directory that ``JobResult.table()`` reads.
    """

    name: str
    source: SplittableSource
    map: BatchFunction
    reduce: BatchFunction
    keys: tuple[str, ...]
    reducers: int | None = None
    combine: BatchFunction | None = None
    output: str | None = None
    options: JobOptions = field(default_factory=JobOptions)

    def __init__(self, name: str, source: SplittableSource, map: BatchFunction, reduce: BatchFunction,
                 keys: Union[str, Sequence[str]], reducers: int | None = None,
                 combine: BatchFunction | None = None, output: Union[str, os.PathLike, ParquetSink, None] = None,
                 options: JobOptions | None = None) -> None:
        if isinstance(output, ParquetSink):
            output = output.directory
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "map", map)
        object.__setattr__(self, "reduce", reduce)
        object.__setattr__(self, "keys", (keys,) if isinstance(keys, str) else tuple(keys))
        object.__setattr__(self, "reducers", reducers)
        object.__setattr__(self, "combine", combine)
        object.__setattr__(self, "output", os.fspath(output) if output is not None else None)
        object.__setattr__(self, "options", options or JobOptions())
        self.validate()

    def validate(self) -> None:
        """Raise ``SpecError`` naming the first problem with the description itself (input
        paths are checked when the job is run, by planning its splits)."""
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise SpecError(f"job name {self.name!r} must be 1-64 letters, digits, '_', '-' or '.'")
        for role in ("map", "reduce"):
            if not callable(getattr(self, role)):
                raise SpecError(f"{role} must be callable, got {getattr(self, role)!r}")
        if self.combine is not None and not callable(self.combine):
            raise SpecError(f"combine must be callable or None, got {self.combine!r}")
        if not self.keys or not all(isinstance(k, str) and k for k in self.keys):
            raise SpecError(f"keys must be one or more column names, got {self.keys!r}")
        for role in ("combine", "reduce"):
            combiner = getattr(self, role)
            if isinstance(combiner, KeyedCombineFn) and not set(self.keys) <= set(combiner.keys):
                raise SpecError(f"{role} groups by {list(combiner.keys)}, which does not include the job's keys "
                                f"{list(self.keys)}")
        if self.reducers is not None and (not isinstance(self.reducers, int) or self.reducers < 1):
            raise SpecError(f"reducers must be at least 1, got {self.reducers}")
        if not isinstance(self.source, SplittableSource):
            raise SpecError("source must be a splittable source (TextSource, ParquetSource, TableSource, "
                            "ArrowDatasetSource, RayDatasetSource, DeadLetterSource), "
                            f"got {type(self.source).__name__}")
        self.options.validate()

    def fingerprint(self) -> str:
        """A stable digest of what the job computes (not of how it runs).

        Snapshots carry it, so a snapshot of another job, or of this job after its code
        changed, is refused instead of silently mixed in.
        """
        parts = {
            "name": self.name,
            "keys": list(self.keys),
            "reducers": self.reducers,
            "output": self.output,
            "source": self.source.describe(),
            "map": _describe_function(self.map),
            "combine": _describe_function(self.combine) if self.combine else None,
            "reduce": _describe_function(self.reduce),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _describe_function(function: Callable) -> str:
    """Qualified name plus source (or bytecode) so an edited function changes the digest."""
    if inspect.isfunction(function):  # reading and hashing the source takes milliseconds: once per function
        return _describe_plain_function(function, function.__code__)
    return _describe_any_callable(function)


@functools.lru_cache(maxsize=256)
def _describe_plain_function(function: Callable, code: object) -> str:
    """``_describe_any_callable`` of a plain function, cached per function and code object
    (an edited function reloaded in the same process gets a new code object)."""
    return _describe_any_callable(function)


def _describe_any_callable(function: Callable) -> str:
    target = function.__call__ if not inspect.isroutine(function) and hasattr(function, "__call__") else function
    name = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', type(function).__qualname__)}"
    try:
        body = inspect.getsource(target)
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        body = code.co_code.hex() if code is not None else repr(function)
    state = getattr(function, "__dict__", None)
    if state and not inspect.isroutine(function):
        body += repr(sorted((k, repr(v)) for k, v in state.items()))
    return name + ":" + hashlib.sha256(body.encode()).hexdigest()[:16]
