"""What a shard host does with a request: run it on every local shard at once (no Ray).

For one request, :meth:`ShardRunner.answer` runs the host's shards one after another on
one thread (a thread hand-off per shard costs more than a fast shard's whole query);
shards not yet started ``parallel_after_s`` after the request came in move to threads of
their own (each shard has its own pool), so a stalled or slow shard holds up the others
on its host for at most that long.  It waits at most a time budget and returns a
:class:`HostReply` with every shard that finished, the errors of those that failed and
the names of those still running (their late results are dropped).
:meth:`ShardRunner.stream` reports pieces as they come, for long-running requests.  The Ray actor (``host_actor.ShardHost``) is a thin shell over it.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Mapping

import pyarrow as pa

from engine.scatter_gather.gathering import HostReply
from engine.scatter_gather.handoff import HandOffThreads, Latch
from engine.scatter_gather.replies import call_handler, encode_reply, flatten_replies, stream_handler
from engine.scatter_gather.results import describe_error
from engine.scatter_gather.spec import Aggregator, Handler, Request

PIECE, DONE, ERROR = "piece", "done", "error"
StreamEvent = tuple[str, str, Any]  # (shard, PIECE | DONE | ERROR, encoded reply | None | error line)


class ShardRunner:
    """A host's shards and the handler; answers one request for all of them.

    Shards of one request run in turn on one thread until ``parallel_after_s`` has passed;
    the shards not started by then run on their own threads.  With an ``aggregator`` that
    ``merges_in_groups``, the replies of the shards that answered go back merged into one.

    Each shard runs at most ``max_concurrency`` calls at once; a request that finds a
    shard at that limit gets an immediate "busy" error for it rather than a queue.
    """

    def __init__(self, shards: Mapping[str, pa.Table], handler: Handler, max_concurrency: int,
                 parallel_after_s: float = 0.002, aggregator: Aggregator | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        if not parallel_after_s >= 0:
            raise ValueError(f"parallel_after_s must be >= 0, got {parallel_after_s!r}")
        self._parallel_after_s = parallel_after_s
        self._merger = aggregator if getattr(aggregator, "merges_in_groups", False) else None
        self.shards = dict(shards)
        self._handler = handler
        self._limit = max_concurrency
        self._pools = {name: ThreadPoolExecutor(max_concurrency, thread_name_prefix=f"sg-{name}")
                       for name in self.shards}
        # Runs each request's shards in turn.  Busy at most: one per request being served,
        # plus one stuck inside each call a shard may hold after its request was answered.
        self._lead = HandOffThreads(max_concurrency * (1 + len(self.shards)), "sg-lead")
        self._running = dict.fromkeys(self.shards, 0)
        self._lock = threading.Lock()
        self.requests = 0  # requests received (answer or stream), for tests and status

    def _claim(self, name: str) -> bool:
        with self._lock:
            if self._running[name] >= self._limit:
                return False
            self._running[name] += 1
            return True

    def _claim_all(self) -> tuple[list[str], list[str]]:
        """(shards claimed for one more call, shards at their limit), with one lock."""
        claimed, busy = [], []
        with self._lock:
            self.requests += 1
            for name, running in self._running.items():
                if running >= self._limit:
                    busy.append(name)
                else:
                    self._running[name] = running + 1
                    claimed.append(name)
        return claimed, busy

    def _release(self, name: str) -> None:
        with self._lock:
            self._running[name] -= 1

    def _busy(self, name: str) -> str:
        return f"ShardBusy: {name} already runs {self._limit} requests (max_concurrency)"

    def _run_one(self, name: str, request: Request) -> Any:
        try:
            return call_handler(self._handler, self.shards[name], request)
        finally:
            self._release(name)

    def _encoded(self, replies: dict[str, Any]) -> tuple[dict[str, Any], Any, tuple[str, ...]]:
        """(replies, combined, combined shards) for the wire: merged into one reply when the
        aggregator allows it, each encoded (``replies.encode_reply``)."""
        if self._merger is not None and len(replies) > 1:
            try:
                combined = self._merger(flatten_replies(replies.values()))
            except Exception:  # the dispatcher's aggregation will report it
                pass
            else:
                return {}, encode_reply(combined), tuple(replies)
        return {name: encode_reply(reply) for name, reply in replies.items()}, None, ()

    def answer(self, request: Request, budget_s: float | None) -> HostReply:
        """Run ``request`` on every shard; wait at most ``budget_s`` (``None``: until all
        finish).  Replies are encoded for the wire (``replies.encode_reply``)."""
        until = None if budget_s is None else time.monotonic() + budget_s
        claimed, busy = self._claim_all()
        errors = {name: self._busy(name) for name in busy}
        run = _SequentialRun(claimed)
        if claimed:
            self._lead.run(lambda: self._run_in_turn(run, request))
            if not run.done.wait(self._parallel_after(budget_s)):
                for name in run.take_rest():
                    self._pools[name].submit(self._run_into, run, name, request)
                run.done.wait(None if until is None else max(0.0, until - time.monotonic()))
        replies, failed, late = run.outcome()
        encoded, combined, combined_shards = self._encoded(replies)
        return HostReply(encoded, errors | failed, late, combined, combined_shards)

    def _parallel_after(self, budget_s: float | None) -> float:
        # Never more than half the budget: the shards moved to their own threads still
        # get the other half.
        return self._parallel_after_s if budget_s is None else min(self._parallel_after_s, budget_s / 2)

    def _run_in_turn(self, run: "_SequentialRun", request: Request) -> None:
        while (name := run.next()) is not None:
            self._run_into(run, name, request)

    def _run_into(self, run: "_SequentialRun", name: str, request: Request) -> None:
        try:
            run.finished(name, self._run_one(name, request), None)
        except Exception as error:  # a shard's failure is its reply, not the host's
            run.finished(name, None, describe_error(error))

    def _stream_one(self, name: str, request: Request, events: "queue.Queue[StreamEvent]") -> None:
        try:
            for piece in stream_handler(self._handler, self.shards[name], request):
                events.put((name, PIECE, encode_reply(piece)))
            events.put((name, DONE, None))
        except Exception as error:  # a shard's failure is reported, not raised
            events.put((name, ERROR, describe_error(error)))
        finally:
            self._release(name)

    def stream(self, request: Request) -> Iterator[StreamEvent]:
        """Run ``request`` on every shard, yielding each shard's pieces as they are made,
        then its ``DONE`` (or ``ERROR``); ends when every shard has ended."""
        events: queue.Queue[StreamEvent] = queue.Queue()
        open_shards = 0
        with self._lock:
            self.requests += 1
        for name in self.shards:
            if self._claim(name):
                self._pools[name].submit(self._stream_one, name, request, events)
                open_shards += 1
            else:
                yield (name, ERROR, self._busy(name))
        while open_shards:
            event = events.get()
            if event[1] != PIECE:
                open_shards -= 1
            yield event

    def close(self) -> None:
        """Stop the thread pools (calls still running finish in the background)."""
        self._lead.close()
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)


class _SequentialRun:
    """One request's shards: those not started yet (taken in turn, or all at once to run
    in parallel) and the outcome of each finished one."""

    def __init__(self, names: list[str]) -> None:
        self._names = names
        self._pending = list(reversed(names))
        self._replies: dict[str, Any] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self.done = Latch()
        if not names:
            self.done.open()

    def next(self) -> str | None:
        """The next shard to run in turn, or ``None`` when none is left to start."""
        with self._lock:
            return self._pending.pop() if self._pending else None

    def take_rest(self) -> list[str]:
        """Every shard not started yet (none will be started in turn after this)."""
        with self._lock:
            rest, self._pending = list(reversed(self._pending)), []
            return rest

    def finished(self, name: str, reply: Any, error: str | None) -> None:
        """Record ``name``'s reply (or its one-line error)."""
        with self._lock:
            if error is None:
                self._replies[name] = reply
            else:
                self._errors[name] = error
            if len(self._replies) + len(self._errors) == len(self._names):
                self.done.open()

    def outcome(self) -> tuple[dict[str, Any], dict[str, str], tuple[str, ...]]:
        """(replies, errors, late shards) as of now, in shard order."""
        with self._lock:
            replies = {n: self._replies[n] for n in self._names if n in self._replies}
            errors = {n: self._errors[n] for n in self._names if n in self._errors}
        late = tuple(n for n in self._names if n not in replies and n not in errors)
        return replies, errors, late

