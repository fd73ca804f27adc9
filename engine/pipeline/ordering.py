"""Source-order delivery: hold batches that arrive early until every earlier one is in.

Each source batch has a sequence number; stages may split it into pieces (named by the
sequence number plus split indices) or drop it.  The tracker counts the live pieces of
every sequence number and releases a sequence's pieces, sorted by name, once it has no
live piece left and every earlier sequence has been released.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class SequenceTracker(Generic[T]):
    """Counts live pieces per source sequence number and releases arrivals in order."""

    def __init__(self, ordered: bool) -> None:
        self.ordered = ordered
        self._pending: dict[int, int] = {}
        self._arrived: dict[int, list[tuple[tuple[int, ...], T]]] = {}
        self._order: deque[int] = deque()
        self._released: list[T] = []

    def open(self, seq: int, pieces: int) -> None:
        """A new source batch ``seq`` entered as ``pieces`` pieces."""
        self._pending[seq] = pieces
        self._arrived[seq] = []
        self._order.append(seq)
        self._release()

    def fork(self, seq: int, pieces: int) -> None:
        """One live piece of ``seq`` became ``pieces`` pieces (0: it was filtered out)."""
        self._pending[seq] += pieces - 1
        self._release()

    def arrive(self, seq: int, name: tuple[int, ...], item: T) -> None:
        """A piece of ``seq`` reached the end of the pipeline."""
        self._pending[seq] -= 1
        if self.ordered:
            self._arrived[seq].append((name, item))
        else:
            self._released.append(item)
        self._release()

    def is_head(self, seq: int) -> bool:
        """True when ``seq`` is the oldest sequence not yet released (it must never wait)."""
        return bool(self._order) and self._order[0] == seq

    def head(self) -> int | None:
        """The oldest sequence not yet released (``None`` when none is open)."""
        return self._order[0] if self._order else None

    def open_sequences(self) -> int:
        """Sequences opened and not yet released."""
        return len(self._order)

    def held(self) -> int:
        """Pieces that arrived and wait for an earlier sequence."""
        return sum(len(items) for items in self._arrived.values())

    def held_of(self, seq: int) -> int:
        """Pieces of ``seq`` that arrived and wait (0 once it is released)."""
        return len(self._arrived.get(seq, ()))

    def take_released(self) -> list[T]:
        """The items now free to deliver, in delivery order."""
        released, self._released = self._released, []
        return released

    def _release(self) -> None:
        while self._order and self._pending[self._order[0]] == 0:
            seq = self._order.popleft()
            del self._pending[seq]
            self._released.extend(item for _, item in sorted(self._arrived.pop(seq), key=lambda pair: pair[0]))
