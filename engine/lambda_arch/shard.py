"""One serving shard: its part of every view, batch and real-time, and its query handler.

A shard holds, for the rows whose ``shard_by`` hash picks it:

- batch views by version ``W`` (the first log offset *not* covered); two versions exist
  during a blue-green switch, the older is dropped once the switch is done;
- real-time *chunks*: the partials of log offsets ``[begin, end)``, one per ingest batch
  as it is applied (in log order).  With ``compact=True`` they are merged with the view's
  combiner (one partial row per view key): size-tiered like a binary counter, and never
  more than ``max_chunks`` chunks after the last pinned offset; the chunks below a pinned
  offset are merged into one.  So a shard holds at most ``max_chunks + pins`` chunks, each
  at most one row per key of a view: memory bounded by the views' keys since ``W``, not by
  the number of events or batches since ``W``.

A query names a snapshot ``(W, H)``; it is answered from batch view ``W`` plus chunks
that tile ``[W, H)`` exactly -- the events with offsets below ``H``, each once.  A shard
that cannot (view ``W`` gone, chunks not applied yet, or merged across ``H``) replies
*stale* and the serving layer retries with a fresh snapshot.

Two rules keep merged chunks answerable.  Only the chunks held when a new one arrives are
merged (before it is appended, or after it on a thread of their own): every one of them is
published by then (the speed layer publishes a batch on all shards before it sends the
next), and the newest chunk's end -- the published offset -- stays a boundary.  And a ``pin(W')`` -- sent when a batch recomputation up to ``W'``
starts -- keeps ``W'`` a chunk boundary, so switching to ``W'`` drops whole chunks.  Plain Python (thread-safe); the Ray executor wraps it in an actor.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

from engine.common.bad_records import describe_error
from engine.common.wire import decode_table
from engine.lambda_arch.errors import StaleSnapshotError
from engine.lambda_arch.spec import Query, View

Where = Callable[[pa.Table], Any]  # table -> boolean mask of the rows wanted


def decode_rows(payload: bytes | pa.Table) -> pa.Table:
    """A table sent as Arrow IPC stream bytes (tables pass through unchanged)."""
    if isinstance(payload, pa.Table):
        return payload
    return decode_table(payload)


@dataclass
class Chunk:
    """Partials of log offsets ``[begin, end)`` per view; ``weight``: batches merged in."""

    begin: int
    end: int
    weight: int
    tables: dict[str, pa.Table] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardSnapshot:
    """One shard's part of the views a query reads, at snapshot ``(batch_offset, speed_offset)``.

    ``batch(view)`` is the batch part (partials; finalized rows for a batch-only view),
    ``speed(view)`` the real-time partials of ``[batch_offset, speed_offset)``.
    """

    shard: int
    shards: int
    batch_offset: int
    speed_offset: int
    views: Mapping[str, View]
    batch_tables: Mapping[str, pa.Table]
    speed_tables: Mapping[str, tuple[pa.Table, ...]]

    def _view(self, name: str) -> View:
        if name not in self.views:
            raise KeyError(f"view {name!r} is not among the views this query declares ({sorted(self.views)})")
        return self.views[name]

    def batch(self, name: str) -> pa.Table:
        """The batch part of view ``name`` on this shard."""
        self._view(name)
        return self.batch_tables[name]

    def speed(self, name: str) -> list[pa.Table]:
        """The real-time partial tables of view ``name`` on this shard."""
        self._view(name)
        return list(self.speed_tables.get(name, ()))

    def parts(self, name: str, where: Where | None = None) -> list[pa.Table]:
        """Batch part then real-time parts of view ``name``, each filtered by ``where``."""
        parts = [self.batch(name)] + self.speed(name)
        return [part.filter(where(part)) for part in parts] if where is not None else parts

    def table(self, name: str, where: Where | None = None) -> pa.Table:
        """View ``name`` on this shard: the parts merged and finalized by its combiner
        (a batch-only view's batch part as stored)."""
        view = self._view(name)
        parts = self.parts(name, where)
        if view.batch_only:
            return parts[0]
        return view.combine.finalize(parts)


class ViewShard:
    """Batch and real-time view partitions of shard ``index`` (of ``shards``).

    ``background_compaction`` (the Ray executor's shards) merges real-time chunks on a
    thread after the append instead of before it (see ``apply``); the chunks held may
    then exceed ``max_chunks + pins`` for as long as a merge runs."""

    def __init__(self, index: int, shards: int, views: Sequence[View], queries: Sequence[Query],
                 speed_start: int = 0, compact: bool = True, max_chunks: int = 4,
                 background_compaction: bool = False) -> None:
        if max_chunks < 2:
            raise ValueError(f"max_chunks must be >= 2 (the newest chunk and the rest), got {max_chunks}")
        self.index = index
        self.shards = shards
        self.compact = compact
        self.background_compaction = background_compaction
        self.max_chunks = max_chunks
        self._views = {view.name: view for view in views}
        self._queries = {query.name: query for query in queries}
        self._lock = threading.Lock()  # held briefly: queries take their snapshot under it
        self._apply_lock = threading.Lock()  # one apply at a time (its compaction runs outside _lock)
        self._compact_lock = threading.Lock()  # held by the one background merge running
        self._pin_generation = 0  # bumped by every pin and drop_below (a merge begun before is not kept)
        self._batch: dict[int, dict[str, pa.Table]] = {}
        self._chunks: list[Chunk] = []
        self._applied_end = speed_start
        self._pins: set[int] = set()
        self._floor = 0  # the batch view switched to last: chunks below it are never needed again

    # -- updates ------------------------------------------------------------------------

    def load_batch(self, version: int, tables: Mapping[str, pa.Table | bytes]) -> int:
        """Hold batch view ``version`` (the green one) next to the current one."""
        decoded = {name: decode_rows(table) for name, table in tables.items()}
        with self._lock:
            self._batch[version] = decoded
        return version

    def apply(self, begin: int, end: int, parts: Mapping[str, pa.Table | bytes]) -> int:
        """Apply the real-time partials of log offsets ``[begin, end)``; returns the applied end.

        Batches must come in log order; one already applied (``end <=`` applied end) is
        ignored, so re-delivery is harmless.  With ``compact``, the chunks held before this
        one (all published by now) are merged first; with ``background_compaction`` the
        new chunk is appended at once and they are merged afterwards on a thread of their
        own, so neither visibility nor queries wait for a merge.
        """
        tables = {name: decode_rows(rows) for name, rows in parts.items()}
        chunk = Chunk(begin, end, 1, {name: t for name, t in tables.items() if t.num_rows})
        with self._apply_lock:
            with self._lock:
                if end <= self._applied_end:
                    return self._applied_end
                if begin != self._applied_end:
                    raise ValueError(f"shard {self.index}: batch [{begin}, {end}) does not follow applied "
                                     f"offset {self._applied_end}")
                if end <= self._floor:  # a lagging speed layer delivering what the batch view covers
                    self._applied_end = end
                    return end
                published = list(self._chunks)
                if self.background_compaction or not self.compact:
                    self._chunks.append(chunk)
                    self._applied_end = end
            if not self.compact:
                return end
            if self.background_compaction:
                self._compact_later(published)
                return end
            self._compact(published)
            with self._lock:
                self._chunks.append(chunk)
                self._applied_end = end
            return end

    def _compact_later(self, published: list[Chunk]) -> None:
        """Merge ``published`` on a thread of its own unless a merge is running (the next
        apply then merges what has accumulated)."""
        if len(published) < 2 or not self._compact_lock.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self._compact(published)
            finally:
                self._compact_lock.release()

        threading.Thread(target=run, name=f"shard-{self.index}-compact", daemon=True).start()

    def _compact(self, published: list[Chunk]) -> None:
        """Replace the chunks ``published`` (the oldest held) by their merge, outside the
        lock queries take; kept only if they are still held first and no ``pin`` came."""
        with self._lock:
            pins, pin_generation = set(self._pins), self._pin_generation
        compacted = self._compacted(published, pins)
        with self._lock:
            held = self._chunks
            if (self._pin_generation == pin_generation and len(held) >= len(published)
                    and all(a is b for a, b in zip(held, published))):
                self._chunks = compacted + held[len(published):]

    def _merge(self, older: Chunk, newer: Chunk) -> Chunk:
        """One chunk of two adjacent ones: each view's partials merged by its combiner."""
        merged = dict(older.tables)
        for name, table in newer.tables.items():
            merged[name] = self._views[name].combine.merge_partials([merged[name], table]) if name in merged else table
        return Chunk(older.begin, newer.end, older.weight + newer.weight, merged)

    def _compacted(self, chunks: list[Chunk], pins: set[int]) -> list[Chunk]:
        """``chunks`` (all published) merged without crossing a pinned offset: each stretch
        that ends at a pin into one chunk; the open stretch after the last pin size-tiered
        and down to fewer than ``max_chunks`` chunks (room for the one being appended)."""
        groups: list[list[Chunk]] = [[]]
        for chunk in chunks:
            groups[-1].append(chunk)
            if chunk.end in pins:
                groups.append([])
        compacted: list[Chunk] = []
        for group in groups[:-1]:  # closed stretches: nothing is appended to them any more
            while len(group) > 1:
                newer = group.pop()
                group[-1] = self._merge(group[-1], newer)
            compacted += group
        tail = groups[-1]
        while len(tail) > 1 and (tail[-2].weight <= tail[-1].weight or len(tail) >= self.max_chunks):
            newer = tail.pop()
            tail[-1] = self._merge(tail[-1], newer)
        return compacted + tail

    def pin(self, offset: int) -> None:
        """Keep ``offset`` a chunk boundary (a batch view up to it is being computed)."""
        with self._lock:
            if any(chunk.begin < offset < chunk.end for chunk in self._chunks):
                raise ValueError(f"shard {self.index}: offset {offset} is inside a real-time chunk already")
            self._pins.add(offset)
            self._pin_generation += 1

    def drop_below(self, version: int) -> None:
        """After the switch to batch view ``version``: forget older views and chunks below it."""
        with self._lock:
            if any(chunk.begin < version < chunk.end for chunk in self._chunks):
                raise RuntimeError(f"shard {self.index}: real-time chunk straddles batch view {version} "
                                   f"(it was not pinned)")
            self._batch = {v: tables for v, tables in self._batch.items() if v >= version}
            self._chunks = [chunk for chunk in self._chunks if chunk.begin >= version]
            self._pins = {pin for pin in self._pins if pin > version}
            self._floor = max(self._floor, version)
            self._pin_generation += 1

    def status(self) -> dict[str, Any]:
        """Applied real-time offset, held batch versions, the real-time chunks and the rows
        and bytes they hold (``speed_rows`` / ``speed_bytes``), and the batch views' rows."""
        with self._lock:
            tables = [table for chunk in self._chunks for table in chunk.tables.values()]
            return {"index": self.index, "applied_end": self._applied_end, "versions": sorted(self._batch),
                    "chunks": [(chunk.begin, chunk.end) for chunk in self._chunks],
                    "speed_rows": sum(table.num_rows for table in tables),
                    "speed_bytes": sum(table.nbytes for table in tables),
                    "batch_rows": sum(table.num_rows for views in self._batch.values() for table in views.values())}

    def warm_up(self) -> None:
        """Load now, before queries come, what the first merge or query would otherwise
        load while queries wait (each holds this process's GIL for a few hundred
        milliseconds): the compiled kernels the views' merges use, and pandas, which
        pyarrow imports the first time a compute function meets a Python scalar
        (``pc.greater_equal(column, 5)`` in a query handler)."""
        from engine.kernels import readiness

        readiness.ensure_loaded()
        try:
            import pandas  # noqa: F401
        except ImportError:  # pyarrow then has nothing to import either
            pass

    # -- queries ------------------------------------------------------------------------

    def snapshot(self, version: int, speed_end: int, views: Sequence[str]) -> ShardSnapshot:
        """The named views at snapshot ``(version, speed_end)``; raises ``StaleSnapshotError``
        when this shard cannot give exactly that snapshot."""
        with self._lock:
            batch = self._batch.get(version)
            if batch is None:
                raise StaleSnapshotError(f"shard {self.index} holds batch views {sorted(self._batch)}, not {version}")
            if self._applied_end < speed_end:
                raise StaleSnapshotError(f"shard {self.index} applied offsets up to {self._applied_end} < {speed_end}")
            chunks = [chunk for chunk in self._chunks if chunk.begin >= version and chunk.end <= speed_end]
        covered = version
        for chunk in chunks:
            if chunk.begin != covered:
                break
            covered = chunk.end
        if covered != speed_end:
            raise StaleSnapshotError(f"shard {self.index}: real-time chunks do not tile [{version}, {speed_end})")
        selected = {name: self._views[name] for name in views}
        speed = {name: tuple(chunk.tables[name] for chunk in chunks if name in chunk.tables) for name in selected}
        return ShardSnapshot(self.index, self.shards, version, speed_end, selected,
                             {name: batch[name] for name in selected}, speed)

    def handle(self, message: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one query message (``query``, ``version``, ``speed_end``, ``request``).

        Returns ``{"reply": ...}``, ``{"stale": reason}`` or ``{"error": one line}`` (the
        handler raised): a shard that answers at all is healthy.
        """
        query = self._queries.get(message.get("query"))  # type: ignore[arg-type]
        if query is None:
            return {"error": f"unknown query {message.get('query')!r} (queries: {sorted(self._queries)})"}
        try:
            snapshot = self.snapshot(int(message["version"]), int(message["speed_end"]), query.views)
        except StaleSnapshotError as error:
            return {"stale": str(error)}
        try:
            return {"reply": query.handler(snapshot, dict(message.get("request") or {}))}
        except Exception as error:  # reported to the caller, not retried
            return {"error": describe_error(error).one_line()}
