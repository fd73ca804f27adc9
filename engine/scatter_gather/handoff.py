"""Handing one call to another thread, and waiting for it, at the cost of a lock release.

A shard host hands each request to a lead thread (so the thread Ray called it on stays
free to answer at the deadline) and waits for the shards to finish.  With a
``ThreadPoolExecutor`` and a ``threading.Event`` that round trip cost about 40 us in a
Ray worker; with a parked thread woken by releasing its lock, and a :class:`Latch` that
is a bare lock, about 12 us.
"""

from __future__ import annotations

import threading
from typing import Callable


class Latch:
    """Opens once (:meth:`open`); :meth:`wait` returns as soon as it is open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._open = False
        self._opening = threading.Lock()

    def open(self) -> None:
        """Open the latch (a second call does nothing)."""
        with self._opening:
            if not self._open:
                self._open = True
                self._lock.release()

    def is_open(self) -> bool:
        """Whether :meth:`open` has been called."""
        return self._open

    def wait(self, timeout_s: float | None) -> bool:
        """Wait until open or ``timeout_s`` passed (``None``: no limit); True if open."""
        if self._open:
            return True
        if not self._lock.acquire(timeout=-1 if timeout_s is None else max(0.0, timeout_s)):
            return self._open
        self._lock.release()  # let every later wait through
        return True


class _Parked:
    """One thread waiting on its own lock for the next call."""

    def __init__(self, owner: "HandOffThreads", name: str) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.call: Callable[[], None] | None = None
        self._owner = owner
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def _loop(self) -> None:
        while True:
            self.wake.acquire()
            call, self.call = self.call, None
            if call is None:  # closed
                return
            try:
                call()
            except BaseException:
                self._owner._retire()  # the thread ends with the error; another may start
                raise
            if not self._owner._park(self):
                return


class HandOffThreads:
    """Up to ``limit`` threads that each run one handed-off call at a time.

    :meth:`run` starts ``call`` on a parked thread (a new one while fewer than ``limit``
    exist); it raises ``RuntimeError`` when all ``limit`` are busy or after :meth:`close`.
    A call that raises ends its thread (the error goes to ``threading.excepthook``).
    """

    def __init__(self, limit: int, name: str) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit!r}")
        self._limit, self._name = limit, name
        self._idle: list[_Parked] = []
        self._started = 0
        self._closed = False
        self._lock = threading.Lock()

    def run(self, call: Callable[[], None]) -> None:
        """Start ``call`` on another thread and return at once."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name}: closed")
            if self._idle:
                thread = self._idle.pop()
            elif self._started < self._limit:
                self._started += 1
                thread = _Parked(self, f"{self._name}-{self._started}")
            else:
                raise RuntimeError(f"{self._name}: all {self._limit} threads are busy")
        thread.call = call
        thread.wake.release()

    def _park(self, thread: _Parked) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._idle.append(thread)
            return True

    def _retire(self) -> None:
        with self._lock:
            self._started -= 1

    def close(self) -> None:
        """End the parked threads; a call still running ends its thread when it returns."""
        with self._lock:
            self._closed, idle, self._idle = True, self._idle, []
        for thread in idle:
            thread.wake.release()  # with no call: the thread returns
