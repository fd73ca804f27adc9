"""The flow core's book of sink deliveries: what is pending, what is committed, and what an
earlier run of the same pipeline committed already (a resumed run delivers it no more).

Piece names are ``(seq, split path...)`` tuples; the sink knows them as their
``events.batch_name`` strings, which is what an earlier run left behind.
"""

from __future__ import annotations

from engine.pipeline.flow.events import batch_name

PRUNE_EVERY = 1024


class SinkLedger:
    """One run's sink bookkeeping: the exactly-once rule (one commit per piece name).

    ``earlier`` are batch names committed before this run (``SinkWriter.committed()`` of a
    resumed sink): pieces of those names are taken as committed without a delivery.
    """

    def __init__(self, earlier: frozenset[str] = frozenset()) -> None:
        self.pending: dict[tuple[int, ...], int] = {}
        self._committed: set[tuple[int, ...]] = set()
        self._earlier = earlier
        self.skipped_batches = 0
        self.skipped_rows = 0

    def __len__(self) -> int:
        """Deliveries not yet committed."""
        return len(self.pending)

    def take(self, name: tuple[int, ...], rows: int) -> bool:
        """Whether a released piece is to be delivered now; if so it becomes pending.

        No for a piece pending or committed already, or committed by an earlier run.
        """
        if name in self.pending or name in self._committed:
            return False
        if self._earlier and batch_name(name) in self._earlier:
            self._committed.add(name)
            self.skipped_batches += 1
            self.skipped_rows += rows
            return False
        self.pending[name] = rows
        return True

    def commit(self, name: tuple[int, ...], oldest_open: int) -> int | None:
        """Record the sink's commit of ``name``; returns its rows (``None`` if it was not
        pending).  ``oldest_open`` is the oldest sequence still open: pieces of older ones
        can never arrive again, so their names are forgotten now and then."""
        rows = self.pending.pop(name, None)
        if rows is None:
            return None
        self._committed.add(name)
        if len(self._committed) >= PRUNE_EVERY:
            self._committed = {done for done in self._committed if done[0] >= oldest_open}
        return rows
