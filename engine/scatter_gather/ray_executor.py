"""The Ray executor: a dispatcher that sends each request to a few shard hosts.

Shards are grouped onto ``options.hosts`` shard-host actors (default: one per node of
the cluster, never more than the shards; shard ``i`` on host ``i mod hosts``).  ``gather``
costs ONE call per host (over a Unix socket to a host on this node,
``local_channel.py``; else a Ray actor call); each host runs the request on its shards concurrently
and answers with every shard that finished shortly before the deadline, so a stalled
shard hides only itself.  Replies that miss the deadline are left out and the missing
*shards* named (their work is not cancelled: its result is dropped when it arrives).
A host that dies is replaced and its shards reloaded from the object store (the
dispatcher owns them); until the new host is up its shards are missing with a reason.
``submit`` returns a request id at once; the hosts stream per-shard pieces under it and
``poll``/``wait`` aggregate what has arrived.  Ids expire ``result_ttl_s`` after submit.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import pyarrow as pa
import ray
from ray.actor import ActorHandle
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from engine.cluster import alive_nodes, require_ray
from engine.errors import NotEnoughRepliesError
from engine.scatter_gather.gathering import Gathering, HostReply
from engine.scatter_gather.host_actor import start_host
from engine.scatter_gather.host_client import HostClient, take_channel_replies, with_channel
from engine.scatter_gather.host_wire import unpack_host_reply
from engine.scatter_gather.local_channel import encode_request
from engine.scatter_gather.placement import STARTING, HostTable, assign_shards, host_budget, host_count
from engine.scatter_gather.requests import RequestTable, new_request_id
from engine.scatter_gather.results import check_enough, describe_error
from engine.scatter_gather.service import ScatterGatherService
from engine.scatter_gather.spec import (Aggregator, GatherResult, Request, ScatterGather,
                                        ScatterGatherOptions, check_min_replies, worker_names)

_REQUEST_BY_REFERENCE_BYTES = 1 << 20  # a table request this big is put once, not sent per host


@dataclass
class _Pending:
    """What the dispatcher keeps for one long-running request."""

    request_id: str
    started: float
    gathering: Gathering
    inflight: dict[int, tuple[HostClient, Any]]  # host -> its ObjectRefGenerator (or ref)
    lock: threading.Lock = field(default_factory=threading.Lock)  # poll/wait from any thread


class RayScatterGather(ScatterGatherService):
    """Runs a :class:`ScatterGather` on shard hosts (or on actors you supply).

    Use as a context manager, or call :meth:`close` to stop the hosts it started.
    ``gather`` may be called from several threads at once.
    """

    executor_name = "ray"

    def __init__(self, spec: ScatterGather) -> None:
        require_ray("a scatter-gather service on the Ray executor")
        names = spec.worker_names
        self.options = spec.options
        groups = assign_shards(names, host_count(spec.options.hosts, alive_nodes(), len(names)))
        self._handler_ref = ray.put(spec.handler)
        self._aggregator_ref = ray.put(spec.aggregator)
        self._shard_refs = {name: ray.put(shard) for name, shard in zip(names, spec.shards)}
        hosts = [self._start(index, tuple(group), 0) for index, group in enumerate(groups)]
        try:
            for host in hosts:
                _check_probe(ray.get(host.probe))
        except Exception:
            for host in hosts:
                ray.kill(host.actor)
            raise
        self._attach([with_channel(replace(host, probe=None), spec.options.local_channel)
                      for host in hosts], names, spec.aggregator, spec.options, owns=True)

    def _start(self, index: int, shards: tuple[str, ...], generation: int) -> HostClient:
        actor, probe = start_host(self._handler_ref, self._aggregator_ref, shards,
                                  [self._shard_refs[s] for s in shards], self.options)
        return HostClient(index, shards, actor, generation, owned=True, probe=probe)

    def _attach(self, hosts: list[HostClient], names: list[str], aggregator: Aggregator,
                options: ScatterGatherOptions, owns: bool) -> None:
        self._init_service()
        self._hosts = hosts
        self._table = HostTable(len(hosts), ready=True)
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
        """Use existing actors as workers, one shard each; each must have
        ``handle(request) -> reply`` (and may have ``handle_stream(request)``, a
        generator, for long-running requests).

        The actors stay yours: :meth:`close` does not kill them, and a dead one is not
        replaced (its shard is reported missing with its error).  Start them (and warm
        them up) before the first request, or their start-up counts against its deadline.
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
        hosts = [HostClient(index, (name,), actor, owned=False)
                 for index, (name, actor) in enumerate(zip(names, actors))]
        self._attach(hosts, names, aggregator, options, owns=False)
        return self

    # -- hosts -------------------------------------------------------------------------

    @property
    def actors(self) -> list[ActorHandle]:
        """The current host actors, in host order."""
        return [host.actor for host in self._hosts]

    @property
    def assignment(self) -> list[list[str]]:
        """The shards of each host, in host order."""
        return [list(host.shards) for host in self._hosts]

    def host_of(self, shard: str) -> ActorHandle:
        """The actor currently serving ``shard``."""
        for host in self._hosts:
            if shard in host.shards:
                return host.actor
        raise KeyError(f"unknown shard {shard!r} (shards: {', '.join(self.worker_names)})")

    def status(self) -> dict[str, Any]:
        with self._lock:
            restarts = self._table.restarts
        channels = sum(1 for host in self._hosts if host.channel is not None and host.channel.usable)
        return super().status() | {"hosts": len(self._hosts), "host_restarts": restarts,
                                   "local_channel_hosts": channels}

    def _host_died(self, host: HostClient) -> None:
        """``host`` failed as a process: replace it (once per generation) if it is ours."""
        if not host.owned:
            return
        with self._lock:
            if not self._table.failed(host.index, host.generation):
                return
            try:
                ray.kill(host.actor)  # it may be unreachable rather than dead: make sure
            except Exception:
                pass
            self._hosts[host.index].close_channel()  # the one with the channel, if any
            generation = self._table.replace(host.index)
            self._hosts[host.index] = self._start(host.index, host.shards, generation)
        with self._stats_lock:
            self._stats["host_restarts"] += 1

    def _callable_hosts(self) -> tuple[list[HostClient], list[HostClient]]:
        """(hosts to call, hosts being replaced); replacements whose probe is in are
        promoted first."""
        with self._lock:
            starting = [h for h in self._hosts
                        if self._table.state(h.index).state == STARTING and h.probe is not None]
        for host in starting:
            if not ray.wait([host.probe], timeout=0)[0]:
                continue
            try:
                _check_probe(ray.get(host.probe))
            except Exception:
                self._host_died(host)
                continue
            host = with_channel(host, self.options.local_channel)
            with self._lock:
                promoted = self._table.ready(host.index, host.generation)
                if promoted:
                    self._hosts[host.index] = host
            if not promoted and host.channel is not None:
                host.channel.close()  # another thread promoted it first
        with self._lock:
            ready = set(self._table.callable_hosts())
            hosts = list(self._hosts)
        return ([h for h in hosts if h.index in ready], [h for h in hosts if h.index not in ready])

    # -- one-shot requests with a deadline -------------------------------------------

    def gather(self, request: Request, deadline_s: float | None = None) -> GatherResult:
        """Send ``request`` to every host (over its same-node channel if it has one and the
        request is plain JSON, else as a Ray actor call); aggregate the shard replies that
        beat the deadline.

        Raises ``NotEnoughRepliesError`` (naming the missing shards) when fewer than
        ``min_replies`` shards answered in time.
        """
        deadline_s = self.options.deadline_s if deadline_s is None else deadline_s
        started = time.monotonic()
        until = started + deadline_s
        gathering = Gathering(self.worker_names)
        ready, unavailable = self._callable_hosts()
        for host in unavailable:
            gathering.host_failed(host.shards, host.unavailable())
        request = self._by_reference(request, len(ready))
        budget = host_budget(until - time.monotonic(), self.options.reply_margin_s)
        body = encode_request(request, budget) if any(h.channel for h in ready) else None
        calls, sent = [], []
        for host in ready:
            call = host.send(body)
            if call is None:
                calls.append((host, host.call(request, budget)))
            else:
                sent.append((host, call))
        for host in take_channel_replies(sent, until, gathering) if sent else ():
            calls.append((host, host.call(request, host_budget(until - time.monotonic(),
                                                                self.options.reply_margin_s))))
        with self._stats_lock:
            self._stats["channel_calls"] += len(sent)
            self._stats["ray_calls"] += len(calls)
        self._collect(calls, until, gathering)
        gathering.close()
        try:
            check_enough(self.options.min_replies, gathering.answered, gathering.missing,
                         gathering.errors)
        except NotEnoughRepliesError:
            self._note_failure()
            raise
        result = gathering.result(self.aggregator, started, None)
        self._note(result)
        return result

    @staticmethod
    def _by_reference(request: Request, hosts: int) -> Any:
        if hosts > 1 and isinstance(request, pa.Table) and request.nbytes >= _REQUEST_BY_REFERENCE_BYTES:
            return ray.put(request)
        return request

    def _collect(self, calls: list[tuple[HostClient, ray.ObjectRef]], until: float,
                 gathering: Gathering) -> None:
        """Record every host reply that arrives before ``until``."""
        if not calls:
            return
        refs = [ref for _, ref in calls]
        try:
            # Fast path: one call when every host answers in time.
            values = ray.get(refs, timeout=max(0.0, until - time.monotonic()))
        except (GetTimeoutError, RayError):
            pass
        else:
            for (host, _), value in zip(calls, values):
                gathering.host_replied(host.decode(value))
            return
        ready = set(ray.wait(refs, num_returns=len(refs),
                             timeout=max(0.0, until - time.monotonic()))[0])
        arrived = [(host, ref) for host, ref in calls if ref in ready]
        try:  # one fetch for all that arrived, unless one of them failed
            values = ray.get([ref for _, ref in arrived])
        except RayError:
            for host, ref in arrived:
                self._take(host, ref, gathering)
            return
        for (host, _), value in zip(arrived, values):
            gathering.host_replied(host.decode(value))

    def _take(self, host: HostClient, ref: ray.ObjectRef, gathering: Gathering) -> bool:
        """Record one arrived host reply; a failed call fails its shards.  True if fetched."""
        try:
            value = ray.get(ref)
        except RayActorError as error:
            gathering.host_failed(host.shards, describe_error(error))
            self._host_died(host)
            return False
        except RayError as error:
            gathering.host_failed(host.shards, describe_error(error))
            return False
        gathering.host_replied(host.decode(value))
        return True

    # -- long-running requests by id -------------------------------------------------

    def submit(self, request: Request) -> str:
        """Send ``request`` to every host and return its request id at once."""
        gathering = Gathering(self.worker_names)
        ready, unavailable = self._callable_hosts()
        for host in unavailable:
            gathering.host_failed(host.shards, host.unavailable())
        request = self._by_reference(request, len(ready))
        inflight = {host.index: (host, host.stream(request)) for host in ready}
        request_id = new_request_id()
        with self._lock:
            return self._requests.add(_Pending(request_id, time.monotonic(), gathering, inflight),
                                      request_id)

    def poll(self, request_id: str) -> GatherResult:
        """The aggregate of every shard reply received so far under ``request_id``.

        ``done`` says whether more can arrive.  Raises ``RequestExpiredError`` /
        ``UnknownRequestError`` (both ``KeyError``) for an expired or unknown id.
        """
        with self._lock:
            pending = self._requests.get(request_id)
        with pending.lock:
            self._drain(pending)
            return self._result(pending)

    def wait(self, request_id: str, timeout_s: float | None = None) -> GatherResult:
        """Block until every shard finished or ``timeout_s`` seconds passed; then poll."""
        with self._lock:
            pending = self._requests.get(request_id)
        until = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with pending.lock:
                self._drain(pending)
                waitables = [waitable for _, waitable in pending.inflight.values()]
            remaining = None if until is None else until - time.monotonic()
            if not waitables or (remaining is not None and remaining <= 0):
                break
            ray.wait(waitables, num_returns=1, timeout=remaining)
        with pending.lock:
            return self._result(pending)

    def _result(self, pending: _Pending) -> GatherResult:
        return pending.gathering.result(self.aggregator, pending.started, pending.request_id,
                                        done=not pending.inflight)

    def _drain(self, pending: _Pending) -> None:
        """Move every piece that has arrived from ``inflight`` into the gathering."""
        for index, (host, waitable) in list(pending.inflight.items()):
            if isinstance(waitable, ray.ObjectRef):  # a supplied actor's one-shot reply
                if ray.wait([waitable], timeout=0)[0]:
                    self._take(host, waitable, pending.gathering)
                    del pending.inflight[index]
                continue
            while ray.wait([waitable], timeout=0)[0]:  # a streaming generator
                try:
                    ref = next(waitable)
                except StopIteration:
                    host.stream_ended(pending.gathering)
                    del pending.inflight[index]
                    break
                try:
                    value = ray.get(ref)
                except RayError as error:
                    pending.gathering.host_failed(host.shards, describe_error(error))
                    del pending.inflight[index]
                    if isinstance(error, RayActorError):
                        self._host_died(host)
                    break
                host.take_event(pending.gathering, value)

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Stop the shard hosts this executor started (supplied actors are left alone)."""
        if self._owns_actors:
            for host in self._hosts:
                ray.kill(host.actor)
                host.close_channel()
        self._hosts = []
        self._stopped.set()


def _check_probe(value: Any) -> None:
    """A host's start-up probe: a warm-up reply with shard errors is a failed start."""
    if isinstance(value, bytes):
        value = unpack_host_reply(value)
    if isinstance(value, HostReply) and value.errors:
        shard, error = next(iter(value.errors.items()))
        raise RuntimeError(f"warm-up request failed on {shard}: {error}")
