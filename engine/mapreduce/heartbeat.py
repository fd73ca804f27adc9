"""Heartbeats as a pure state machine: which peers to ping now, and which are overdue.

The master pings its workers and a standby master pings its primary; both keep one
``HeartbeatMonitor`` and do the sending themselves.  A peer has at most one ping
outstanding; a new one goes out ``interval_s`` after the last answer.  A ping not
answered within ``timeout_s`` makes the peer overdue (a peer that is still starting, a
fresh process, gets ``start_grace`` times longer).  No Ray and an injectable clock, so
it is unit-tested without waiting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Peer:
    starting: bool
    sent_at: float | None = None  # the outstanding ping, if any
    answered_at: float | None = None


class HeartbeatMonitor:
    """Ping bookkeeping for a set of named peers; see the module docstring."""

    def __init__(self, interval_s: float, timeout_s: float, clock: Callable[[], float] = time.monotonic,
                 start_grace: float = 6.0) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.start_grace = start_grace
        self._peers: dict[str, _Peer] = {}

    def add(self, name: str, starting: bool = False) -> None:
        """Watch ``name`` (``starting``: a fresh process, given more time to answer)."""
        self._peers.setdefault(name, _Peer(starting))

    def remove(self, name: str) -> None:
        """Stop watching ``name``."""
        self._peers.pop(name, None)

    def peers(self) -> list[str]:
        """The watched peers, by name."""
        return sorted(self._peers)

    def due(self) -> list[str]:
        """Peers to ping now (recorded as pinged): no ping outstanding and either never
        answered or answered at least ``interval_s`` ago."""
        now = self.clock()
        names = []
        for name, peer in sorted(self._peers.items()):
            if peer.sent_at is None and (peer.answered_at is None or now - peer.answered_at >= self.interval_s):
                peer.sent_at = now
                names.append(name)
        return names

    def probe(self, name: str) -> bool:
        """Ask for a ping to ``name`` now; True when one must be sent (none outstanding)."""
        peer = self._peers.get(name)
        if peer is None or peer.sent_at is not None:
            return False
        peer.sent_at = self.clock()
        return True

    def answered(self, name: str) -> bool:
        """``name`` answered its ping.  True when this was its first answer after starting
        (it is ready for work now)."""
        peer = self._peers.get(name)
        if peer is None:
            return False
        peer.sent_at = None
        peer.answered_at = self.clock()
        was_starting, peer.starting = peer.starting, False
        return was_starting

    def overdue(self) -> list[str]:
        """Peers whose outstanding ping is past its deadline."""
        now = self.clock()
        return [name for name, peer in sorted(self._peers.items())
                if peer.sent_at is not None
                and now - peer.sent_at > self.timeout_s * (self.start_grace if peer.starting else 1.0)]
