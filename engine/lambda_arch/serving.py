"""The serving layer: answers queries from one consistent snapshot ``(W, H)`` of the shards.

It owns the snapshot: the batch view version ``W`` served and the published speed offset
``H >= W``.  A query reads the snapshot once, scatters it to every view shard (a loop
over in-process shards inline, ``engine.scatter_gather`` over shard actors on Ray) and
aggregates the replies; the :class:`Answer` reports ``(W, H)``: it covers exactly the
log offsets below ``H`` (below ``W`` for a batch-only query).

Blue-green switch to a batch view ``W'``: every shard loads it next to the old one, the
snapshot flips to ``(W', max(H, W'))`` in one assignment, then shards drop the old view.
A query holding the old snapshot that reaches a shard after the drop gets a *stale*
reply and is retried with the new snapshot (``RetryPolicy``), so no answer mixes them.

Every shard call goes through that shard's ``CircuitBreaker``: a shard that keeps
failing opens it, and queries then fail at once with a ``QueryFailedError`` naming the
shard, instead of waiting out every retry; after the reset time a health probe lets a
trial query through (half-open) and a success closes it again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from engine.common.circuit_breaker import OPEN, CircuitBreakerRegistry
from engine.common.retry import RetryPolicy
from engine.errors import CircuitOpenError, QueryFailedError
from engine.lambda_arch.errors import QueryHandlerError, ShardUnavailableError, StaleSnapshotError
from engine.lambda_arch.spec import Query, QueryContext, QueryResult


@dataclass(frozen=True)
class Answer:
    """A query's answer and the log offsets it covers.

    The answer equals the query computed over the acknowledged, de-duplicated events with
    offsets below ``speed_offset``: ``[0, batch_offset)`` from the batch view and
    ``[batch_offset, speed_offset)`` from the real-time view (a batch-only query has
    ``speed_offset == batch_offset``).  ``request`` is the request the shards answered
    (after the query's ``prepare``); ``extra`` holds details the aggregator attached.
    """

    query: str
    value: Any
    batch_offset: int
    speed_offset: int
    extra: dict[str, Any] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def covers(self) -> tuple[int, int]:
        """The offsets covered: ``(0, speed_offset)`` as a half-open range."""
        return (0, self.speed_offset)


@dataclass(frozen=True)
class ShardOutcome:
    """What one shard did with a query message: its reply dict, or why it gave none."""

    name: str
    reply: Mapping[str, Any] | None = None
    failure: str | None = None


Gather = Callable[[dict[str, Any]], list[ShardOutcome]]
Probe = Callable[[str], bool]


def _unwrap(outcome: ShardOutcome) -> Any:
    """A shard's reply, or the error its outcome stands for."""
    if outcome.failure is not None or outcome.reply is None:
        raise ShardUnavailableError(outcome.name, outcome.failure or "no reply")
    if "stale" in outcome.reply:
        raise StaleSnapshotError(outcome.reply["stale"])
    if "error" in outcome.reply:
        raise QueryHandlerError(f"{outcome.name}: {outcome.reply['error']}")
    return outcome.reply["reply"]


class ServingLayer:
    """Snapshot owner and query front end over the view shards named ``shard_names``.

    ``clock`` and ``sleep`` (breakers and retries) are injectable for tests.
    """

    def __init__(self, queries: Sequence[Query], shard_names: Sequence[str], gather: Gather, batch_version: int,
                 retry: RetryPolicy, breaker_failures: int = 5, breaker_reset_s: float = 5.0,
                 probe: Probe | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._queries = {query.name: query for query in queries}
        self._names = list(shard_names)
        self._retry = retry
        self._clock = clock
        self._sleep = sleep
        self._breaker_settings = (breaker_failures, breaker_reset_s)
        self._lock = threading.Lock()
        self._snapshot = (batch_version, batch_version)
        self.latencies_s: deque[float] = deque(maxlen=10_000)
        self.answered = 0
        self.failed = 0
        self.set_gather(gather, probe)

    # -- the snapshot --------------------------------------------------------------------

    @property
    def snapshot(self) -> tuple[int, int]:
        """The current (batch version W, published speed offset H)."""
        return self._snapshot

    def publish_speed(self, high_water: int) -> None:
        """The speed layer made offsets below ``high_water`` visible on every shard."""
        with self._lock:
            version, current = self._snapshot
            if high_water > current:
                self._snapshot = (version, high_water)

    def switch_batch(self, version: int) -> None:
        """Flip to batch view ``version`` (already loaded on every shard), atomically."""
        with self._lock:
            old_version, speed = self._snapshot
            if version < old_version:
                raise ValueError(f"batch view {version} is older than the served view {old_version}")
            self._snapshot = (version, max(speed, version))

    def reset(self, version: int) -> None:
        """After a speed-layer rebuild on batch view ``version``: serve ``(version, version)``."""
        with self._lock:
            self._snapshot = (version, version)

    def set_gather(self, gather: Gather, probe: Probe | None = None) -> None:
        """Serve from a (new) set of shards; their breakers start closed."""
        failures, reset_s = self._breaker_settings
        registry = CircuitBreakerRegistry(failure_threshold=failures, reset_timeout_s=reset_s, clock=self._clock,
                                          failure_on=(ShardUnavailableError,))
        for name in self._names:
            registry.get(name, (lambda shard=name: probe(shard)) if probe is not None else None)
        self._gather = gather
        self.breakers = registry

    # -- queries -------------------------------------------------------------------------

    def query(self, name: str, request: dict[str, Any], visible_event_time_ms: int = 0) -> Answer:
        """Answer query ``name`` for ``request``; raises ``QueryFailedError`` naming the
        shard when no consistent answer can be had."""
        query = self._queries.get(name)
        if query is None:
            self.failed += 1
            raise QueryFailedError(f"unknown query {name!r} (queries: {sorted(self._queries)})")
        started = time.perf_counter()
        if query.prepare is not None:
            version, speed = self._snapshot
            request = query.prepare(dict(request), QueryContext(visible_event_time_ms, version, speed))
        try:
            replies, version, speed = self._retry.call(self._attempt, query, request, sleep=self._sleep,
                                                       clock=self._clock)
        except (CircuitOpenError, ShardUnavailableError, StaleSnapshotError, QueryHandlerError) as error:
            self.failed += 1
            raise _failed(name, error) from error
        result = query.aggregator(replies, request)
        value, extra = (result.value, dict(result.extra)) if isinstance(result, QueryResult) else (result, {})
        self.latencies_s.append(time.perf_counter() - started)
        self.answered += 1
        return Answer(name, value, version, speed, extra, request)

    def _attempt(self, query: Query, request: dict[str, Any]) -> tuple[list[Any], int, int]:
        version, speed = self._snapshot
        if query.batch_only:
            speed = version
        breakers = {name: self.breakers.get(name) for name in self._names}
        for name, breaker in breakers.items():
            if breaker.state == OPEN:  # fail fast: the answer needs every shard
                raise CircuitOpenError(name, breaker.retry_after_s())
        outcomes = self._gather({"query": query.name, "version": version, "speed_end": speed, "request": request})
        replies: list[Any] = []
        errors: list[BaseException] = []
        for outcome in outcomes:
            try:
                replies.append(breakers[outcome.name].call(_unwrap, outcome))
            except (CircuitOpenError, ShardUnavailableError, StaleSnapshotError, QueryHandlerError) as error:
                errors.append(error)
        for kind in (QueryHandlerError, CircuitOpenError, ShardUnavailableError, StaleSnapshotError):
            for error in errors:  # the most telling error first: a handler bug is never retried
                if isinstance(error, kind):
                    raise error
        if len(replies) != len(self._names):
            raise ShardUnavailableError(",".join(self._names), f"{len(replies)} replies from {len(self._names)} shards")
        return replies, version, speed

    def metrics(self) -> dict[str, Any]:
        """Query counts, latency percentiles and the breakers' states."""
        latencies = list(self.latencies_s)
        return {"answered": self.answered, "failed": self.failed, "breakers": self.breakers.states(),
                "latency_p50_s": float(np.percentile(latencies, 50)) if latencies else None,
                "latency_p99_s": float(np.percentile(latencies, 99)) if latencies else None}


def _failed(name: str, error: BaseException) -> QueryFailedError:
    attempts = getattr(error, "retry_attempts", 1)
    if isinstance(error, CircuitOpenError):
        text = (f"query {name!r}: view shard {error.breaker} is unavailable (its circuit breaker is open; "
                f"next trial in {error.retry_after_s:.1f}s)")
        shards = [error.breaker]
    elif isinstance(error, ShardUnavailableError):
        text = f"query {name!r} failed after {attempts} attempt(s): {error}"
        shards = error.shard.split(",")
    elif isinstance(error, QueryHandlerError):
        text = f"query {name!r} failed on {error}"
        shards = [str(error).split(":", 1)[0]]
    else:
        text = f"query {name!r}: no consistent snapshot after {attempts} attempt(s): {error}"
        shards = []
    failure = QueryFailedError(text)
    failure.shards = shards  # type: ignore[attr-defined]
    return failure
