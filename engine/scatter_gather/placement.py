"""Which shard host serves which shards, and each host's life (no Ray here).

Shards are logical partitions; a *shard host* is one process (a Ray actor) that holds
several of them and answers for all of them in one call, as an Elasticsearch node
searches its local shards for one request.  :func:`host_count` sizes the hosts,
:func:`assign_shards` deals the shards out, and :class:`HostTable` is the state machine
the Ray executor drives when a host dies and is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

STARTING, READY, DEAD = "starting", "ready", "dead"


def host_count(requested: int | None, nodes: int, shards: int) -> int:
    """Hosts to start: ``requested`` (or one per node when ``None``), at most ``shards``, at least 1."""
    wanted = nodes if requested is None else requested
    if wanted < 1:
        raise ValueError(f"hosts must be >= 1, got {wanted!r}")
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards!r}")
    return min(wanted, shards)


def host_budget(remaining_s: float, min_margin_s: float) -> float:
    """How long a host may wait for its shards when ``remaining_s`` is left before the
    deadline: minus a margin for its reply's trip (a tenth of the time left, at least
    ``min_margin_s``, at most half of it); never negative."""
    remaining_s = max(0.0, remaining_s)
    margin = min(remaining_s / 2, max(min_margin_s, remaining_s / 10))
    return remaining_s - margin


def assign_shards(names: Sequence[str], hosts: int) -> list[list[str]]:
    """Deal the shards round-robin: shard ``i`` goes to host ``i mod hosts``.

    Every host gets ``len(names) // hosts`` or one more shard, each list in shard order.
    """
    if not 1 <= hosts <= len(names):
        raise ValueError(f"hosts must be between 1 and {len(names)} (the shards), got {hosts!r}")
    return [list(names[host::hosts]) for host in range(hosts)]


@dataclass
class HostState:
    """One host slot: its current process generation and whether it can take calls."""

    state: str
    generation: int = 0


class HostTable:
    """The life of each host slot: ``starting`` -> ``ready`` -> ``dead`` -> ``starting`` ...

    Every process that fills a slot has a *generation* (0 for the first, +1 per
    replacement).  Events name the generation they are about, so news about a process
    that was already replaced (a second failed call, a late probe) changes nothing.
    Not thread-safe: the executor holds a lock around it.
    """

    def __init__(self, hosts: int, ready: bool = False) -> None:
        if hosts < 1:
            raise ValueError(f"hosts must be >= 1, got {hosts!r}")
        self._hosts = [HostState(READY if ready else STARTING) for _ in range(hosts)]
        self.restarts = 0

    def __len__(self) -> int:
        return len(self._hosts)

    def state(self, host: int) -> HostState:
        """A copy of ``host``'s state."""
        current = self._hosts[host]
        return HostState(current.state, current.generation)

    def ready(self, host: int, generation: int) -> bool:
        """The process ``generation`` of ``host`` answered its start-up probe.  True if that
        made it ready (False for a stale generation or a host not starting)."""
        current = self._hosts[host]
        if current.generation != generation or current.state != STARTING:
            return False
        current.state = READY
        return True

    def failed(self, host: int, generation: int) -> bool:
        """The process ``generation`` of ``host`` died (or failed to start).  True if this
        is news, i.e. the caller must now replace it with :meth:`replace`."""
        current = self._hosts[host]
        if current.generation != generation or current.state == DEAD:
            return False
        current.state = DEAD
        return True

    def replace(self, host: int) -> int:
        """A new process is starting for dead ``host``: returns its generation."""
        current = self._hosts[host]
        if current.state != DEAD:
            raise ValueError(f"host {host} is {current.state}, only a dead host is replaced")
        current.generation += 1
        current.state = STARTING
        self.restarts += 1
        return current.generation

    def callable_hosts(self) -> list[int]:
        """Hosts that take calls now (ready), in order."""
        return [index for index, host in enumerate(self._hosts) if host.state == READY]
