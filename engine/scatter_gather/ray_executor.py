"""The Ray executor: a dispatcher that fans each request out to worker actors.

``gather`` sends the request to every worker at once and waits at most ``deadline_s``;
replies that miss it are left out and named in ``missing`` (their work is not cancelled:
its result is dropped when it arrives).  ``submit`` returns a request id at once; the
workers' (partial) replies accumulate under it, and ``poll``/``wait`` aggregate what
has arrived.  Ids expire ``result_ttl_s`` after submit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import ray
from ray.actor import ActorHandle
from ray.exceptions import GetTimeoutError, RayError

from engine.cluster import require_ray
from engine.errors import NotEnoughRepliesError
from engine.scatter_gather.replies import decode_reply
from engine.scatter_gather.service import ScatterGatherService
from engine.scatter_gather.requests import RequestTable, new_request_id
from engine.scatter_gather.results import build_result, check_enough, describe_error
from engine.scatter_gather.shard_actor import start_shard_actors
from engine.scatter_gather.spec import (Aggregator, GatherResult, Request, ScatterGather,
                                        ScatterGatherOptions, check_min_replies, worker_names)


@dataclass
class _Pending:
    """What the dispatcher keeps for one long-running request."""

    request_id: str
    started: float
    inflight: dict[str, Any]  # worker -> ObjectRef or ObjectRefGenerator still running
    pieces: dict[str, list] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    errors: dict[str, str] = field(default_factory=dict)


class RayScatterGather(ScatterGatherService):
    """Runs a :class:`ScatterGather` on shard actors (or on actors you supply).

    Use as a context manager, or call :meth:`close` to stop the actors it started.
    ``gather`` may be called from several threads at once; long-running requests are
    kept in a lock-protected table.
    """

    executor_name = "ray"

    def __init__(self, spec: ScatterGather) -> None:
        require_ray("a scatter-gather service on the Ray executor")
        actors = start_shard_actors(spec.shards, spec.handler, spec.worker_names,
                                    spec.options)
        self._attach(actors, spec.worker_names, spec.aggregator, spec.options, owns=True)

    def _attach(self, actors: list[ActorHandle], names: list[str], aggregator: Aggregator,
                options: ScatterGatherOptions, owns: bool) -> None:
        self._init_service()
        self.actors = actors
        self.worker_names = names
        self.aggregator = aggregator
        self.options = options
        self._owns_actors = owns
        self._requests: RequestTable[_Pending] = RequestTable(options.result_ttl_s)
        self._lock = threading.Lock()

    @classmethod
    def from_actors(cls, actors: Sequence[ActorHandle], aggregator: Aggregator,
                    options: ScatterGatherOptions | None = None,
                    names: Sequence[str] | None = None) -> "RayScatterGather":
        """Use existing actors as workers; each must have ``handle(request) -> reply``
        (and may have ``handle_stream(request)``, a generator, for long-running requests).

        The actors stay yours: :meth:`close` does not kill them.  Start them (and warm
        them up) before the first request, or their start-up time counts against its
        deadline.
        """
        require_ray("RayScatterGather.from_actors")
        actors = list(actors)
        if not actors:
            raise ValueError("actors must be a non-empty list of Ray actor handles")
        names = list(names) if names is not None else worker_names(len(actors))
        if len(names) != len(actors) or len(set(names)) != len(names):
            raise ValueError(f"names must be {len(actors)} distinct ids, got {names!r}")
        options = options or ScatterGatherOptions()
        check_min_replies(options, len(actors))
        self = cls.__new__(cls)
        self._attach(actors, names, aggregator, options, owns=False)
        return self

    # -- one-shot requests with a deadline -------------------------------------------

    def gather(self, request: Request, deadline_s: float | None = None) -> GatherResult:
        """Send ``request`` to every worker; aggregate the replies that beat the deadline.

        Raises ``NotEnoughRepliesError`` (naming the missing workers) when fewer than
        ``min_replies`` answered in time.
        """
        deadline_s = self.options.deadline_s if deadline_s is None else deadline_s
        started = time.monotonic()
        refs = [actor.handle.remote(request) for actor in self.actors]
        errors: dict[str, str] = {}
        try:
            # Fast path: one call when every worker answers in time.
            values = ray.get(refs, timeout=deadline_s)
            pieces = {name: [decode_reply(value)]
                      for name, value in zip(self.worker_names, values)}
        except (GetTimeoutError, RayError):
            remaining = max(0.0, deadline_s - (time.monotonic() - started))
            pieces, errors = self._collect_ready(refs, remaining)
        answered = [name for name in self.worker_names if name in pieces]
        missing = [name for name in self.worker_names if name not in pieces]
        try:
            check_enough(self.options.min_replies, answered, missing, errors)
        except NotEnoughRepliesError:
            self._note_failure()
            raise
        result = build_result(self.aggregator, self.worker_names, pieces, set(pieces), errors,
                              started, None)
        self._note(result)
        return result

    def _collect_ready(self, refs: list[ray.ObjectRef],
                       timeout: float) -> tuple[dict[str, list], dict[str, str]]:
        """Replies ready within ``timeout``, and the errors of workers that failed."""
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        ready_set = set(ready)
        named = [(name, ref) for name, ref in zip(self.worker_names, refs) if ref in ready_set]
        pieces: dict[str, list] = {}
        errors: dict[str, str] = {}
        try:
            values = ray.get([ref for _, ref in named])
            return {name: [decode_reply(v)] for (name, _), v in zip(named, values)}, errors
        except RayError:
            pass  # some worker failed: fetch one by one to tell which
        for name, ref in named:
            try:
                pieces[name] = [decode_reply(ray.get(ref))]
            except RayError as error:
                errors[name] = describe_error(error)
        return pieces, errors

    # -- long-running requests by id -------------------------------------------------

    def submit(self, request: Request) -> str:
        """Send ``request`` to every worker and return its request id at once."""
        inflight: dict[str, Any] = {}
        for name, actor in zip(self.worker_names, self.actors):
            inflight[name] = (actor.handle_stream.remote(request)
                              if hasattr(actor, "handle_stream")
                              else actor.handle.remote(request))
        request_id = new_request_id()
        with self._lock:
            return self._requests.add(_Pending(request_id, time.monotonic(), inflight),
                                      request_id)

    def poll(self, request_id: str) -> GatherResult:
        """The aggregate of every reply received so far under ``request_id``.

        ``done`` says whether more can arrive.  Raises ``RequestExpiredError`` /
        ``UnknownRequestError`` (both ``KeyError``) for an expired or unknown id.
        """
        with self._lock:
            pending = self._requests.get(request_id)
            self._drain(pending)
            return self._result(pending)

    def wait(self, request_id: str, timeout_s: float | None = None) -> GatherResult:
        """Block until every worker finished or ``timeout_s`` seconds passed; then poll."""
        with self._lock:
            pending = self._requests.get(request_id)
        until = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._lock:
                self._drain(pending)
                waitables = list(pending.inflight.values())
            remaining = None if until is None else until - time.monotonic()
            if not waitables or (remaining is not None and remaining <= 0):
                break
            ray.wait(waitables, num_returns=1, timeout=remaining)
        with self._lock:
            return self._result(pending)

    def _result(self, pending: _Pending) -> GatherResult:
        return build_result(self.aggregator, self.worker_names, pending.pieces,
                            pending.answered, pending.errors, pending.started,
                            pending.request_id, done=not pending.inflight)

    def _drain(self, pending: _Pending) -> None:
        """Move every reply that has arrived from ``inflight`` into ``pieces``."""
        for name, waitable in list(pending.inflight.items()):
            if isinstance(waitable, ray.ObjectRef):
                if ray.wait([waitable], timeout=0)[0]:
                    self._take(pending, name, waitable, final=True)
                continue
            while ray.wait([waitable], timeout=0)[0]:  # a streaming generator
                try:
                    ref = next(waitable)
                except StopIteration:
                    pending.answered.add(name)
                    del pending.inflight[name]
                    break
                if not self._take(pending, name, ref, final=False):
                    break

    @staticmethod
    def _take(pending: _Pending, name: str, ref: ray.ObjectRef, final: bool) -> bool:
        """Fetch one arrived reply; a failure ends that worker's reply.  True if fetched."""
        try:
            pending.pieces.setdefault(name, []).append(decode_reply(ray.get(ref)))
        except RayError as error:
            pending.errors[name] = describe_error(error)
            pending.pieces.pop(name, None)  # a failed worker contributes nothing
            del pending.inflight[name]
            return False
        if final:
            pending.answered.add(name)
            del pending.inflight[name]
        return True

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Stop the shard actors this executor started (supplied actors are left alone)."""
        if self._owns_actors:
            for actor in self.actors:
                ray.kill(actor)
        self.actors = []
        self._stopped.set()
