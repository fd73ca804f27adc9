"""Long-running request ids: issue, look up, and expire after a time-to-live.

The table maps a request id to whatever the executor keeps for it (its in-flight
references and the replies that have arrived).  Ids are random (``uuid4``), so they
cannot be guessed.  Expired ids leave a tombstone for a while so that a late ``poll``
says *expired* rather than *unknown*.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from typing import Callable, Generic, TypeVar

from engine.scatter_gather.spec import RequestExpiredError, UnknownRequestError

Record = TypeVar("Record")

_MAX_TOMBSTONES = 10_000


def new_request_id() -> str:
    """A fresh, unguessable request id."""
    return uuid.uuid4().hex


class RequestTable(Generic[Record]):
    """Request id -> record, each valid for ``ttl_s`` seconds after it was added."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._live: OrderedDict[str, tuple[float, Record]] = OrderedDict()
        self._expired: OrderedDict[str, None] = OrderedDict()

    def add(self, record: Record, request_id: str | None = None) -> str:
        """Store ``record`` under ``request_id`` (a new random id by default); return it."""
        self.sweep()
        request_id = request_id or new_request_id()
        self._live[request_id] = (self._clock() + self._ttl_s, record)
        return request_id

    def get(self, request_id: str) -> Record:
        """The record of ``request_id``; raises a clear error if unknown or expired."""
        self.sweep()
        entry = self._live.get(request_id)
        if entry is not None:
            return entry[1]
        if request_id in self._expired:
            raise RequestExpiredError(
                f"request id {request_id!r} expired (results are kept {self._ttl_s:g} s "
                "after submit; see ScatterGatherOptions.result_ttl_s)")
        raise UnknownRequestError(f"unknown request id {request_id!r}")

    def sweep(self) -> list[Record]:
        """Drop every expired record (oldest first) and return them."""
        now = self._clock()
        dropped = []
        # Entries are in insertion order and share one TTL, so expiry order is the same.
        while self._live:
            request_id, (expires_at, record) = next(iter(self._live.items()))
            if expires_at > now:
                break
            del self._live[request_id]
            self._expired[request_id] = None
            dropped.append(record)
        while len(self._expired) > _MAX_TOMBSTONES:
            self._expired.popitem(last=False)
        return dropped

    def discard(self, request_id: str) -> None:
        """Forget ``request_id`` now (no-op if unknown)."""
        self._live.pop(request_id, None)

    def __len__(self) -> int:
        return len(self._live)
