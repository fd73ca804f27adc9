"""A mixin for objects that guard their state with a lock and must still pickle.

Locks cannot be pickled; components shipped to Ray actors drop theirs on the way and
get a fresh one on arrival.
"""

from __future__ import annotations

import threading
from typing import Callable


class PicklableWithLock:
    """Pickles everything but ``self._lock``; recreates it with ``_lock_factory``."""

    _lock_factory: Callable[[], object] = staticmethod(threading.Lock)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = type(self)._lock_factory()
