"""What a Lambda deployment is: inert, validated data (contract, views, queries, options).

    spec = LambdaArchitecture(directory, contract, views=[...], queries=[...], options=LambdaOptions())
    with engine.run(spec, "inline") as lam:        # or "ray"
        lam.ingest(batch)                            # durable, de-duplicated, acknowledged
        lam.query("top_words", prefix="a")           # batch view + real-time view, merged

- a :class:`View` is a combiner (``engine.common.combine.KeyedCombineFn``) over keyed
  partial rows that its ``map`` makes from a batch of stored events; the batch layer
  (one MapReduce job) and the speed layer (one pipeline stage) both use it, and the
  serving layer merges their partials with it.  Views are sharded over the serving
  shards by a stable hash of ``shard_by`` columns;
- a :class:`Query` is a scatter-gather handler over one shard's snapshot of the views it
  names, plus an aggregator of the shards' replies.

Nothing here starts anything or imports an executor: ``engine.run`` does.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pyarrow as pa

from engine.common.combine import KeyedCombineFn
from engine.common.rate_limit import RateLimiter
from engine.common.retry import RetryPolicy
from engine.errors import SpecError
from engine.lambda_arch.contract import EventContract
from engine.lambda_arch.errors import ShardUnavailableError, StaleSnapshotError
from engine.lambda_arch.event_time import EventTimeWindow

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_name(kind: str, name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(f"{kind} name {name!r} must be 1-64 letters, digits, '_', '-' or '.' (it names files)")


@dataclass(frozen=True)
class View:
    """One view: ``map(events) -> rows`` per batch of stored events, combined by ``combine``.

    - ``combine``: a ``KeyedCombineFn`` (e.g. ``GroupByAggregate``); the view's partials
      are ``combine.to_partial(map(events))``, merged with ``combine.merge_partials``;
      queries see ``combine.finalize`` of the batch part and the real-time parts.
    - ``shard_by``: key columns (a subset of ``combine.keys``) whose stable hash picks the
      serving shard of a row, so each key lives on one shard.
    - ``batch_only``: the view needs all events at once (e.g. attribution): the batch
      layer finalizes it, the speed layer skips it, and only batch-only queries read it.
      Its partials may hold many rows per key; ``finalize`` gets every row of its keys.
    - ``columns``: the event columns ``map`` reads (``None``: all, with ``offset``).
    """

    name: str
    map: Callable[[pa.Table], pa.Table]
    combine: KeyedCombineFn
    shard_by: tuple[str, ...]
    batch_only: bool = False
    columns: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _check_name("view", self.name)
        if not callable(self.map):
            raise SpecError(f"view {self.name!r}: map must be callable, got {self.map!r}")
        if not isinstance(self.combine, KeyedCombineFn):
            raise SpecError(f"view {self.name!r}: combine must be a KeyedCombineFn (e.g. GroupByAggregate), "
                            f"got {type(self.combine).__name__}")
        object.__setattr__(self, "shard_by", (self.shard_by,) if isinstance(self.shard_by, str) else tuple(self.shard_by))
        if not self.shard_by or not set(self.shard_by) <= set(self.combine.keys):
            raise SpecError(f"view {self.name!r}: shard_by {list(self.shard_by)} must be a non-empty subset of the "
                            f"combine keys {list(self.combine.keys)}")
        if self.columns is not None:
            object.__setattr__(self, "columns", (self.columns,) if isinstance(self.columns, str) else tuple(self.columns))


@dataclass(frozen=True)
class QueryResult:
    """What an aggregator may return to attach details to the answer's value."""

    value: Any
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryContext:
    """What ``Query.prepare`` may use: the newest event time the queries currently
    cover (0 when none, or the contract has no time column) and the snapshot offsets."""

    visible_event_time_ms: int
    batch_offset: int
    speed_offset: int


@dataclass(frozen=True)
class Query:
    """A scatter-gather query over the views named in ``views``.

    - ``handler(snapshot, request) -> reply`` runs on every shard; ``snapshot`` is an
      ``engine.lambda_arch.shard.ShardSnapshot`` of this shard's part of the views;
    - ``aggregator(replies, request) -> value`` (or a :class:`QueryResult`) combines the
      replies of all shards, in shard order;
    - ``prepare(request, context) -> request`` (optional) runs once on the caller's side
      first, e.g. to turn "the last 5 minutes" into fixed bounds;
    - ``batch_only``: answer from the batch view alone (required to read a batch-only view).
    """

    name: str
    handler: Callable[[Any, dict], Any]
    aggregator: Callable[[list, dict], Any]
    views: tuple[str, ...]
    batch_only: bool = False
    prepare: Callable[[dict, QueryContext], dict] | None = None

    def __post_init__(self) -> None:
        _check_name("query", self.name)
        for role in ("handler", "aggregator"):
            if not callable(getattr(self, role)):
                raise SpecError(f"query {self.name!r}: {role} must be callable, got {getattr(self, role)!r}")
        if self.prepare is not None and not callable(self.prepare):
            raise SpecError(f"query {self.name!r}: prepare must be callable or None")
        object.__setattr__(self, "views", (self.views,) if isinstance(self.views, str) else tuple(self.views))
        if not self.views:
            raise SpecError(f"query {self.name!r}: name the views its handler reads in views=")


def _default_query_retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=40, backoff="exponential", base_delay_s=0.001, max_delay_s=0.05, jitter=0.5,
                       retry_on=(StaleSnapshotError, ShardUnavailableError))


def _default_batch_retry() -> RetryPolicy:
    return RetryPolicy(max_attempts=3, backoff="exponential", base_delay_s=1.0, max_delay_s=30.0, jitter=0.5,
                       retry_on=(Exception,))


@dataclass(frozen=True)
class LambdaOptions:
    """Settings of a Lambda deployment (the executor is chosen by ``engine.run``).

    - ``shards``: serving shards the views are hash-partitioned over.
    - ``dedup_horizon_hours``: a re-sent id is dropped while its stored copy is within
      this much event time of the newest event stored (see ``dedup.py``).
    - ``batch_executor``: executor of the batch layer's MapReduce job (``None``: the
      deployment's); ``batch_reducers`` / ``batch_workers``: its reducers and workers
      (``None``: the MapReduce default, one worker with a slot per CPU on one node; a
      number: that many single-slot workers, fewer than the CPUs leaving cores to ingest
      and the speed layer); ``batch_nice``: the batch job's tasks, and the driver's read
      of the log for it, run this many OS nice steps lower (Linux, per thread; 0-19;
      default 19, the lowest priority), so ingest, the speed layer and queries get the
      CPU first while the batch layer recomputes.  (The embedded cluster runs Ray's worker
      processes at the driver's priority for this; on a cluster you joined they run at
      Ray's default, 15 steps lower, where the batch tasks can go only 4 steps lower.)
    - ``speed_replicas`` / ``feed_capacity``: replicas of the speed stage and batches its
      live feed holds before ingest blocks (Ray).
    - ``compact_speed``: merge the real-time chunks of a shard with the views' combiners,
      size-tiered, into at most ``speed_chunks`` chunks after the last pinned offset (and
      one per pinned stretch below it): memory bounded by the views' keys since the batch
      view, not by the number of events or batches since it.
    - ``query_deadline_s``: how long a query waits for a shard (Ray); ``query_retry``:
      retries of stale snapshots and unavailable shards (the one ``RetryPolicy``).
    - ``breaker_failures`` / ``breaker_reset_s``: a shard failing this many queries in a
      row opens its circuit breaker: queries fail fast until, after ``breaker_reset_s``,
      a health probe lets a trial through (half-open).
    - ``ingest_limiter``: an ``engine.common.rate_limit.RateLimiter`` admitting each
      ingest for its rows (per ``client_id``): drop mode raises ``RateLimitedError``,
      queue mode waits.
    - ``log_compression``: codec of the log's IPC segments (``None``, ``"lz4"``, ``"zstd"``).
    - ``event_time_window``: which event times ingest accepts (an ``EventTimeWindow``:
      by default at most 24 h ahead of the clock, not before 2000, at most a year behind
      the newest event); rows outside are rejected with a reason.  ``None``: no check.
    - ``batch_retry``: how a failed scheduled batch recomputation is retried (the one
      ``RetryPolicy``; by default 3 attempts, any exception, backoff from 1 s); when it
      gives up, the schedule stops and the deployment reports a ``BatchLayerError``.
    """

    shards: int = 2
    dedup_horizon_hours: float = 24.0
    batch_executor: str | None = None
    batch_reducers: int = 4
    batch_workers: int | None = None
    batch_nice: int = 19
    speed_replicas: int = 1
    feed_capacity: int = 8
    compact_speed: bool = True
    speed_chunks: int = 4
    query_deadline_s: float = 5.0
    query_retry: RetryPolicy = field(default_factory=_default_query_retry)
    breaker_failures: int = 5
    breaker_reset_s: float = 5.0
    ingest_limiter: RateLimiter | None = None
    log_compression: str | None = "lz4"
    event_time_window: EventTimeWindow | None = field(default_factory=EventTimeWindow)
    batch_retry: RetryPolicy = field(default_factory=_default_batch_retry)

    def __post_init__(self) -> None:
        if self.batch_executor not in (None, "inline", "ray"):
            raise SpecError(f"LambdaOptions.batch_executor must be None, 'inline' or 'ray', got {self.batch_executor!r}")
        for name in ("shards", "batch_reducers", "speed_replicas", "feed_capacity", "breaker_failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpecError(f"LambdaOptions.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.speed_chunks, bool) or not isinstance(self.speed_chunks, int) or self.speed_chunks < 2:
            raise SpecError(f"LambdaOptions.speed_chunks must be an int >= 2, got {self.speed_chunks!r}")
        if isinstance(self.batch_nice, bool) or not isinstance(self.batch_nice, int) or not 0 <= self.batch_nice <= 19:
            raise SpecError(f"LambdaOptions.batch_nice must be an int within [0, 19], got {self.batch_nice!r}")
        if self.batch_workers is not None and self.batch_workers < 1:
            raise SpecError(f"LambdaOptions.batch_workers must be None or >= 1, got {self.batch_workers}")
        if not 0 <= self.dedup_horizon_hours < math.inf:
            raise SpecError(f"LambdaOptions.dedup_horizon_hours must be finite and >= 0, got {self.dedup_horizon_hours}")
        for name in ("query_deadline_s", "breaker_reset_s"):
            if not 0 < getattr(self, name) < math.inf:
                raise SpecError(f"LambdaOptions.{name} must be finite and > 0, got {getattr(self, name)}")
        for name in ("query_retry", "batch_retry"):
            if not isinstance(getattr(self, name), RetryPolicy):
                raise SpecError(f"LambdaOptions.{name} must be a RetryPolicy, got {type(getattr(self, name)).__name__}")
        if self.event_time_window is not None and not isinstance(self.event_time_window, EventTimeWindow):
            raise SpecError(f"LambdaOptions.event_time_window must be an EventTimeWindow or None, "
                            f"got {type(self.event_time_window).__name__}")
        if self.ingest_limiter is not None and not isinstance(self.ingest_limiter, RateLimiter):
            raise SpecError(f"LambdaOptions.ingest_limiter must be a RateLimiter or None, "
                            f"got {type(self.ingest_limiter).__name__}")
        if self.log_compression not in (None, "lz4", "zstd"):
            raise SpecError(f"LambdaOptions.log_compression must be None, 'lz4' or 'zstd', got {self.log_compression!r}")

    @property
    def dedup_horizon_ms(self) -> int:
        """The de-duplication horizon in milliseconds of event time."""
        return int(self.dedup_horizon_hours * 3_600_000)


@dataclass(frozen=True)
class LambdaArchitecture:
    """A Lambda deployment over the master dataset in ``directory`` (see the module doc).

    Reopening the same directory with the same views continues where it stopped.
    """

    directory: str
    contract: EventContract
    views: tuple[View, ...]
    queries: tuple[Query, ...]
    options: LambdaOptions = field(default_factory=LambdaOptions)

    def __init__(self, directory: str | os.PathLike[str], contract: EventContract, views: Sequence[View],
                 queries: Sequence[Query], options: LambdaOptions | None = None) -> None:
        object.__setattr__(self, "directory", os.fspath(directory))
        object.__setattr__(self, "contract", contract)
        object.__setattr__(self, "views", tuple(views))
        object.__setattr__(self, "queries", tuple(queries))
        object.__setattr__(self, "options", options or LambdaOptions())
        self.validate()

    def validate(self) -> None:
        """Raise ``SpecError`` naming the first problem."""
        if not isinstance(self.contract, EventContract):
            raise SpecError(f"contract must be an EventContract, got {type(self.contract).__name__}")
        if not isinstance(self.options, LambdaOptions):
            raise SpecError(f"options must be LambdaOptions, got {type(self.options).__name__}")
        if not self.views or not all(isinstance(view, View) for view in self.views):
            raise SpecError("views must be a non-empty list of View")
        if not self.queries or not all(isinstance(query, Query) for query in self.queries):
            raise SpecError("queries must be a non-empty list of Query")
        _unique("view", [view.name for view in self.views])
        _unique("query", [query.name for query in self.queries])
        views = {view.name: view for view in self.views}
        columns = set(self.contract.log_schema.names)
        for view in self.views:
            missing = set(view.columns or ()) - columns
            if missing:
                raise SpecError(f"view {view.name!r} reads columns {sorted(missing)} the contract does not have")
        for query in self.queries:
            for name in query.views:
                if name not in views:
                    raise SpecError(f"query {query.name!r} reads view {name!r}, which is not defined "
                                    f"(views: {sorted(views)})")
                if views[name].batch_only and not query.batch_only:
                    raise SpecError(f"query {query.name!r} reads the batch-only view {name!r}; "
                                    f"declare the query batch_only=True")

    def view(self, name: str) -> View:
        """The view called ``name``."""
        for view in self.views:
            if view.name == name:
                return view
        raise SpecError(f"no view {name!r} (views: {[view.name for view in self.views]})")

    def query(self, name: str) -> Query:
        """The query called ``name``."""
        for query in self.queries:
            if query.name == name:
                return query
        raise SpecError(f"no query {name!r} (queries: {[query.name for query in self.queries]})")


def _unique(kind: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SpecError(f"duplicate {kind} name {name!r}")
        seen.add(name)
