"""What a shard host does with a request: run it on every local shard at once (no Ray).

:class:`ShardRunner` holds a host's shards, each with its own thread pool, so a stalled
or slow shard never holds up the others on the same host.  :meth:`ShardRunner.answer`
waits at most a time budget and returns a :class:`HostReply` with every shard that
finished, the errors of those that failed and the names of those still running (their
late results are dropped).  :meth:`ShardRunner.stream` reports pieces as they come, for
long-running requests.  The Ray actor (``host_actor.ShardHost``) is a thin shell over it.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Iterator, Mapping

import pyarrow as pa

from engine.scatter_gather.gathering import HostReply
from engine.scatter_gather.replies import PartialReplies, call_handler, encode_reply, stream_handler
from engine.scatter_gather.results import describe_error
from engine.scatter_gather.spec import Handler, Request

PIECE, DONE, ERROR = "piece", "done", "error"
StreamEvent = tuple[str, str, Any]  # (shard, PIECE | DONE | ERROR, encoded reply | None | error line)


class ShardRunner:
    """A host's shards and the handler; answers one request for all of them.

    Each shard runs at most ``max_concurrency`` calls at once; a request that finds a
    shard at that limit gets an immediate "busy" error for it rather than a queue.
    """

    def __init__(self, shards: Mapping[str, pa.Table], handler: Handler, max_concurrency: int) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self.shards = dict(shards)
        self._handler = handler
        self._limit = max_concurrency
        self._pools = {name: ThreadPoolExecutor(max_concurrency, thread_name_prefix=f"sg-{name}")
                       for name in self.shards}
        self._running = dict.fromkeys(self.shards, 0)
        self._lock = threading.Lock()
        self.requests = 0  # requests received (answer or stream), for tests and status

    def _claim(self, name: str) -> bool:
        with self._lock:
            if self._running[name] >= self._limit:
                return False
            self._running[name] += 1
            return True

    def _release(self, name: str) -> None:
        with self._lock:
            self._running[name] -= 1

    def _busy(self, name: str) -> str:
        return f"ShardBusy: {name} already runs {self._limit} requests (max_concurrency)"

    def _run_one(self, name: str, request: Request) -> Any:
        try:
            reply = call_handler(self._handler, self.shards[name], request)
            if isinstance(reply, PartialReplies):
                return PartialReplies(tuple(encode_reply(piece) for piece in reply.pieces))
            return encode_reply(reply)
        finally:
            self._release(name)

    def answer(self, request: Request, budget_s: float | None) -> HostReply:
        """Run ``request`` on every shard; wait at most ``budget_s`` (``None``: until all
        finish).  Replies are encoded for the wire (``replies.encode_reply``)."""
        futures: dict[str, Future] = {}
        errors: dict[str, str] = {}
        with self._lock:
            self.requests += 1
        for name in self.shards:
            if self._claim(name):
                futures[name] = self._pools[name].submit(self._run_one, name, request)
            else:
                errors[name] = self._busy(name)
        if futures:
            wait(list(futures.values()), timeout=budget_s)
        replies: dict[str, Any] = {}
        late: list[str] = []
        for name, future in futures.items():
            if not future.done():
                late.append(name)
            elif future.exception() is not None:
                errors[name] = describe_error(future.exception())  # type: ignore[arg-type]
            else:
                replies[name] = future.result()
        return HostReply(replies, errors, tuple(late))

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
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
