"""Token-bucket rate limiting: one bucket, and a limiter with a global plus per-client buckets.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``.  ``try_acquire``
takes tokens only if they are there now; ``acquire`` *reserves* them (the balance may go
negative) and sleeps until the reservation is covered, so concurrent waiters are served
in arrival order and nobody is starved.  Either way, over any interval of length ``t``
starting from a full bucket, at most ``burst + rate_per_s * t`` tokens are handed out.

:class:`RateLimiter` combines a global bucket with one bucket per client id and either
drops an over-limit request with :class:`RateLimitedError` (``mode="drop"``) or queues it
by waiting (``mode="queue"``).  :func:`throttle_batches` applies it to a stream of Arrow
batches, which is how a pipeline source throttles its producer.

Limits are per process; for one limit across Ray workers host the limiter in one actor.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable, Iterable, Iterator

import pyarrow as pa

from engine.errors import RateLimitedError
from engine.common.picklable_lock import PicklableWithLock

MODES = ("queue", "drop")
# Per-client buckets beyond this many are pruned when full (a full bucket is the same
# as a fresh one, so forgetting it changes nothing).
_PRUNE_CLIENTS_AT = 10_000


class TokenBucket(PicklableWithLock):
    """A token bucket of capacity ``burst`` refilling at ``rate_per_s`` tokens per second.

    Starts full.  Thread-safe; clock and sleep are injectable for tests.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not _positive_finite(rate_per_s):
            raise ValueError(f"TokenBucket rate_per_s must be a finite number > 0, got {rate_per_s!r}")
        if not _positive_finite(burst):
            raise ValueError(f"TokenBucket burst must be a finite number > 0, got {burst!r}")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()

    @property
    def tokens(self) -> float:
        """Tokens available now (negative while reservations are outstanding)."""
        with self._lock:
            self._refill()
            return self._tokens

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if they are available now; never waits."""
        _check_tokens(tokens)
        with self._lock:
            self._refill()
            if self._tokens >= tokens:
                self._tokens -= tokens
                return True
            return False

    def acquire(self, tokens: float = 1.0, timeout_s: float | None = None) -> None:
        """Take ``tokens``, waiting until they have accrued (queue mode).

        Raises :class:`RateLimitedError` at once, without taking anything, when the wait
        would exceed ``timeout_s``.  Requests larger than ``burst`` are allowed; they
        wait for the deficit.
        """
        wait = self.reserve(tokens, timeout_s)
        if wait > 0:
            self._sleep(wait)

    def reserve(self, tokens: float = 1.0, timeout_s: float | None = None) -> float:
        """Reserve ``tokens`` and return how long the caller must wait before using them.

        Raises :class:`RateLimitedError` (reserving nothing) when that wait would exceed
        ``timeout_s``.  :meth:`acquire` is ``reserve`` followed by the sleep.
        """
        _check_tokens(tokens)
        if timeout_s is not None and not (timeout_s >= 0):
            raise ValueError(f"timeout_s must be None or >= 0, got {timeout_s!r}")
        with self._lock:
            self._refill()
            wait = max(0.0, (tokens - self._tokens) / self.rate_per_s)
            if timeout_s is not None and wait > timeout_s:
                raise RateLimitedError(
                    f"rate limit: {tokens:g} token(s) need a {wait:.3f}s wait, over the "
                    f"{timeout_s:g}s timeout",
                    client_id=None,
                    scope="bucket",
                    retry_after_s=wait,
                )
            self._tokens -= tokens
            return wait

    def refund(self, tokens: float) -> None:
        """Give back tokens taken but not used (capped at ``burst``)."""
        _check_tokens(tokens)
        with self._lock:
            self._refill()
            self._tokens = min(self.burst, self._tokens + tokens)

    def wait_time_s(self, tokens: float = 1.0) -> float:
        """Seconds until ``tokens`` would be available (0 if they are now)."""
        with self._lock:
            self._refill()
            return max(0.0, (tokens - self._tokens) / self.rate_per_s)

    def is_full(self) -> bool:
        """True when the bucket holds ``burst`` tokens (indistinguishable from a new one)."""
        with self._lock:
            self._refill()
            return self._tokens >= self.burst

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
            self._updated = now


class RateLimiter(PicklableWithLock):
    """A global token bucket plus one bucket per client id.

    A request is admitted only when both its client's bucket and the global bucket
    have the tokens (either limit may be ``None`` = unlimited).  Bursts default to one
    second's worth of the rate (at least 1 token).  ``mode="drop"`` refuses an
    over-limit request with :class:`RateLimitedError` naming the client;
    ``mode="queue"`` waits for the tokens, up to ``queue_timeout_s`` if given.
    """

    def __init__(
        self,
        global_rate_per_s: float | None,
        per_client_rate_per_s: float | None,
        global_burst: float | None = None,
        per_client_burst: float | None = None,
        mode: str = "queue",
        queue_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"RateLimiter mode must be 'queue' or 'drop', got {mode!r}")
        if queue_timeout_s is not None and not (queue_timeout_s >= 0):
            raise ValueError(f"RateLimiter queue_timeout_s must be None or >= 0, got {queue_timeout_s!r}")
        self.mode = mode
        self.queue_timeout_s = queue_timeout_s
        self.per_client_rate_per_s = per_client_rate_per_s
        self.per_client_burst = _default_burst(per_client_rate_per_s, per_client_burst)
        self._clock = clock
        self._sleep = sleep
        self._global = (
            None
            if global_rate_per_s is None
            else TokenBucket(global_rate_per_s, _default_burst(global_rate_per_s, global_burst), clock, sleep)
        )
        if per_client_rate_per_s is not None:
            TokenBucket(per_client_rate_per_s, self.per_client_burst, clock, sleep)  # validates
        self._clients: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self.admitted = 0
        self.dropped = 0

    @property
    def global_bucket(self) -> TokenBucket | None:
        """The bucket shared by all clients (``None`` when there is no global limit)."""
        return self._global

    def client_bucket(self, client_id: str) -> TokenBucket | None:
        """The bucket of ``client_id`` (created full on first use), or ``None`` if unlimited."""
        if self.per_client_rate_per_s is None:
            return None
        with self._lock:
            bucket = self._clients.get(client_id)
            if bucket is None:
                if len(self._clients) >= _PRUNE_CLIENTS_AT:
                    self._prune_full_buckets()
                bucket = TokenBucket(self.per_client_rate_per_s, self.per_client_burst, self._clock, self._sleep)
                self._clients[client_id] = bucket
            return bucket

    def admit(self, client_id: str, tokens: float = 1.0, timeout_s: float | None = None) -> None:
        """Admit a request of ``tokens`` from ``client_id``, or refuse / delay it.

        Drop mode raises :class:`RateLimitedError` naming the client and the limit hit,
        taking no tokens.  Queue mode waits until both buckets cover the request; with a
        timeout (``timeout_s`` here, else ``queue_timeout_s``) it raises instead of
        waiting longer than that.
        """
        if not isinstance(client_id, str):
            raise ValueError(f"RateLimiter client_id must be a string, got {client_id!r}")
        _check_tokens(tokens)
        client = self.client_bucket(client_id)
        if self.mode == "drop":
            self._admit_or_drop(client_id, client, tokens)
        else:
            self._admit_queued(client_id, client, tokens, self.queue_timeout_s if timeout_s is None else timeout_s)
        self.admitted += 1

    def _admit_or_drop(self, client_id: str, client: TokenBucket | None, tokens: float) -> None:
        if client is not None and not client.try_acquire(tokens):
            self.dropped += 1
            raise RateLimitedError(
                f"rate limit: client {client_id!r} is over its limit of "
                f"{self.per_client_rate_per_s:g}/s (burst {self.per_client_burst:g}); request dropped",
                client_id=client_id,
                scope="client",
                retry_after_s=client.wait_time_s(tokens),
            )
        if self._global is not None and not self._global.try_acquire(tokens):
            if client is not None:
                client.refund(tokens)
            self.dropped += 1
            raise RateLimitedError(
                f"rate limit: global limit of {self._global.rate_per_s:g}/s "
                f"(burst {self._global.burst:g}) reached; request from client {client_id!r} dropped",
                client_id=client_id,
                scope="global",
                retry_after_s=self._global.wait_time_s(tokens),
            )

    def _admit_queued(
        self, client_id: str, client: TokenBucket | None, tokens: float, timeout_s: float | None
    ) -> None:
        # Reserve in both buckets first, then sleep once for the longer of the two waits.
        wait_client = 0.0
        if client is not None:
            try:
                wait_client = client.reserve(tokens, timeout_s)
            except RateLimitedError as exc:
                raise _named(exc, client_id, "client") from None
        wait_global = 0.0
        if self._global is not None:
            try:
                wait_global = self._global.reserve(tokens, timeout_s)
            except RateLimitedError as exc:
                if client is not None:
                    client.refund(tokens)
                raise _named(exc, client_id, "global") from None
        wait = max(wait_client, wait_global)
        if wait > 0:
            self._sleep(wait)

    def _prune_full_buckets(self) -> None:
        for cid in [cid for cid, bucket in self._clients.items() if bucket.is_full()]:
            del self._clients[cid]


def throttle_batches(
    batches: Iterable[pa.RecordBatch | pa.Table],
    limiter: RateLimiter,
    client_id: str,
    cost: str | Callable[[pa.RecordBatch | pa.Table], float] = "rows",
    on_drop: Callable[[pa.RecordBatch | pa.Table, RateLimitedError], None] | None = None,
) -> Iterator[pa.RecordBatch | pa.Table]:
    """Yield ``batches`` no faster than ``limiter`` admits them for ``client_id``.

    ``cost`` is ``"rows"`` (a token per row), ``"batches"`` (a token per batch) or a
    function of the batch.  In queue mode the producer is slowed down; in drop mode a
    refused batch is skipped and passed to ``on_drop`` (or, without ``on_drop``, the
    :class:`RateLimitedError` propagates and stops the stream).
    """
    if cost == "rows":
        cost_of: Callable[[pa.RecordBatch | pa.Table], float] = lambda b: float(b.num_rows)
    elif cost == "batches":
        cost_of = lambda b: 1.0
    elif callable(cost):
        cost_of = cost
    else:
        raise ValueError(f"throttle_batches cost must be 'rows', 'batches' or a function, got {cost!r}")
    for batch in batches:
        tokens = cost_of(batch)
        if tokens > 0:
            try:
                limiter.admit(client_id, tokens)
            except RateLimitedError as exc:
                if on_drop is None:
                    raise
                on_drop(batch, exc)
                continue
        yield batch


def _named(exc: RateLimitedError, client_id: str, scope: str) -> RateLimitedError:
    return RateLimitedError(
        f"{exc} (client {client_id!r}, {scope} limit)",
        client_id=client_id,
        scope=scope,
        retry_after_s=exc.retry_after_s,
    )


def _default_burst(rate: float | None, burst: float | None) -> float:
    if burst is not None:
        return burst
    if rate is None:
        return 1.0
    return max(1.0, float(rate))


def _positive_finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _check_tokens(tokens: float) -> None:
    if not (isinstance(tokens, (int, float)) and not isinstance(tokens, bool) and math.isfinite(tokens) and tokens >= 0):
        raise ValueError(f"token count must be a finite number >= 0, got {tokens!r}")
