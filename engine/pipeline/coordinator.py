"""The Ray coordinator of one pipeline run: bounded pipes, dispatch, completions, failures.

It runs in a background thread of the driver.  Batches move between stages as object
references; the coordinator only reads each call's small ``meta`` object.  Every stage
has an input pipe of bounded depth (batches waiting, batches being filtered, and
finished batches waiting for room downstream); a batch enters a pipe only when there is
room, so a slow stage or sink stops the stages before it and, at the end of the chain,
the source reader (backpressure).  Memory is bounded by the sum of the pipe bounds.

Delivery guarantee: every source batch is delivered to the sink exactly once for
deterministic filters.  A call's result is acted on only when the call completes; when a
replica dies, the calls it had in flight are resent to its replacement (at-least-once
execution), and the sink commits each batch name once.  Dead rows are recorded once per
completed call, so resends never duplicate dead letters.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import pyarrow as pa
import ray
from ray.exceptions import RayActorError, RayTaskError

from engine.pipeline.autoscale import Autoscaler
from engine.pipeline.batches import split_by_key
from engine.pipeline.dead_letters import DeadLetterRecorder
from engine.pipeline.delivery import batch_name
from engine.pipeline.ordering import SequenceTracker
from engine.pipeline.replica import REPLICA_POOL
from engine.pipeline.result import PipelineResult, StageMetrics
from engine.pipeline.delivery import commit
from engine.io.sources import LiveFeed
from engine.pipeline.spec import Pipeline, Stage
from engine.errors import PipelineFailedError


@dataclass
class Piece:
    """A batch in flight: its stable name (sequence number + split path), its data (an
    object reference, or a source table held by the driver: Ray passes small tables inline
    and puts large ones in the object store itself), rows and key route (the replica index
    of a keyed stage)."""

    name: tuple[int, ...]
    ref: ray.ObjectRef | pa.Table
    rows: int
    route: int = 0


@dataclass
class Replica:
    """A replica actor and its calls in flight, keyed by their meta reference (in order)."""

    actor: object
    configured: ray.ObjectRef
    calls: dict[ray.ObjectRef, "Call"] = field(default_factory=dict)


@dataclass
class Call:
    """One submitted filter call: which stage and replica, its input and output references."""

    stage_index: int
    replica: Replica
    piece: Piece
    out_refs: list[ray.ObjectRef]


class StageRuntime:
    """The live state of one stage: replicas, its input pipe and its metrics."""

    def __init__(self, index: int, stage: Stage) -> None:
        self.index = index
        self.stage = stage
        self.metrics = StageMetrics(stage.id, replicas=stage.replicas)
        self.active: list[Replica] = []
        self.retiring: list[Replica] = []
        self.ready: deque[Piece] = deque()
        self.held: deque[list[Piece]] = deque()
        self.autoscaler = Autoscaler(stage.autoscale) if stage.autoscale else None

    def inflight(self) -> int:
        """Calls submitted and not yet completed."""
        return sum(len(r.calls) for r in self.active) + sum(len(r.calls) for r in self.retiring)

    def depth(self) -> int:
        """Batches in this stage's input pipe (a finished batch waiting for room downstream
        counts once, however many pieces the split for the next stage made of it)."""
        return len(self.ready) + self.inflight() + len(self.held)

    def new_replica(self) -> Replica:
        """Start one replica actor of this stage."""
        return Replica(*REPLICA_POOL.acquire(self.stage))


_STOP = object()


class Coordinator:
    """Runs one pipeline on Ray; its public methods are called by the ``PipelineHandle``."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.options = pipeline.options
        self.stages = [StageRuntime(i, stage) for i, stage in enumerate(pipeline.stages)]
        self.sink_metrics = StageMetrics("sink", replicas=1)
        self.tracker: SequenceTracker[Piece] = SequenceTracker(self.options.ordered)
        self.recorder = DeadLetterRecorder(self.options.dead_letter_dir)
        self.lock = threading.Lock()
        self.source_queue: queue.Queue[pa.Table] = queue.Queue(maxsize=self.options.source_capacity)
        self.source_finished = threading.Event()
        self.stop_reading = threading.Event()
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.wakeup = threading.Event()  # set by the source and sink threads on progress
        self.sink_queue: queue.Queue[object] = queue.Queue()
        self.sink_pending = 0
        self.inflight: dict[ray.ObjectRef, Call] = {}
        self.scale_requests: dict[int, int] = {}
        self.error: BaseException | None = None
        self.next_seq = 0
        self.read_everything = False
        self.result: PipelineResult | None = None
        self._sink_table: pa.Table | None = None
        self._started = time.perf_counter()

    # -- threads ---------------------------------------------------------------------

    def run(self) -> None:
        """The coordinator thread: start replicas and the helper threads, loop, clean up."""
        source_thread = threading.Thread(target=self._read_source, name="pipeline-source", daemon=True)
        sink_thread = threading.Thread(target=self._write_sink, name="pipeline-sink", daemon=True)
        try:
            for runtime in self.stages:
                runtime.active = [runtime.new_replica() for _ in range(runtime.stage.replicas)]
            source_thread.start()
            sink_thread.start()
            while not self.cancelled.is_set() and self.error is None:
                self.wakeup.clear()  # before looking at the state: a later set() is seen
                self._apply_scaling()
                self._admit_from_source()
                self._move_held()
                for runtime in self.stages:
                    self._dispatch(runtime)
                self._note_depths()
                if self._all_done():
                    break
                self._wait_for_completions()
        except BaseException as exc:  # engine errors end the run; the handle re-raises them
            self.error = self.error or exc
        finally:
            self.sink_queue.put(_STOP)
            if sink_thread.is_alive():
                sink_thread.join()
            self.stop_reading.set()
            self._kill_replicas()
            self._finish()

    def _read_source(self) -> None:
        """The source thread: read batches into the bounded source pipe until the source
        ends or the run stops reading; a batch once read is always offered (unless cancelled)."""
        try:
            batches = iter(self.pipeline.source.batches())
            while not (self.stop_reading.is_set() or self.cancelled.is_set()):
                batch = next(batches, None)
                if batch is None:
                    self.read_everything = True
                    return
                if batch.num_rows == 0:
                    continue
                while not self.source_queue_put(batch):
                    if self.cancelled.is_set() or self.error is not None:
                        return
        except BaseException as exc:
            self.error = self.error or PipelineFailedError(f"source {type(self.pipeline.source).__name__} failed: {exc!r}")
        finally:
            self.source_finished.set()
            self.wakeup.set()

    def source_queue_put(self, batch: pa.Table) -> bool:
        """Offer a batch to the source pipe for a moment; False when it stayed full."""
        try:
            self.source_queue.put(batch, timeout=0.05)
            self.wakeup.set()
            return True
        except queue.Full:
            return False

    def _write_sink(self) -> None:
        writer = self.pipeline.sink.open()
        delivered: set[tuple[int, ...]] = set()
        try:
            while True:
                piece = self.sink_queue.get()
                if piece is _STOP or self.cancelled.is_set():
                    break
                assert isinstance(piece, Piece)
                if piece.name not in delivered:  # the exactly-once commit
                    table = piece.ref if isinstance(piece.ref, pa.Table) else ray.get(piece.ref)
                    commit(writer, batch_name(piece.name), table, self.options.sink_retry)
                    delivered.add(piece.name)
                    with self.lock:
                        self.sink_metrics.batches_in += 1
                        self.sink_metrics.rows_in += table.num_rows
                        self.sink_metrics.batches_out += 1
                        self.sink_metrics.rows_out += table.num_rows
                with self.lock:
                    self.sink_pending -= 1
                self.wakeup.set()
            if not self.cancelled.is_set() and self.error is None:
                self._sink_table = writer.close()
        except BaseException as exc:
            self.error = self.error or PipelineFailedError(f"sink {type(self.pipeline.sink).__name__} failed: {exc!r}")

    # -- the loop --------------------------------------------------------------------

    def _admit_from_source(self) -> None:
        first = self.stages[0]
        capacity = first.stage.pipe_capacity
        while first.depth() < capacity:
            try:
                batch = self.source_queue.get_nowait()
            except queue.Empty:
                return
            seq = self.next_seq
            self.next_seq += 1
            parts = len(first.active) if first.stage.key else 1
            tables = split_by_key(batch, first.stage.key, parts) if first.stage.key else [batch]
            named = [((seq, i) if parts > 1 else (seq,), i, table) for i, table in enumerate(tables) if table.num_rows]
            pieces = [Piece(name, table, table.num_rows, route) for name, route, table in named]
            self.tracker.open(seq, len(pieces))
            first.ready.extend(pieces)
            first.metrics.note_depth(first.depth())

    def _fits(self, depth: int, capacity: int, size: int) -> bool:
        return depth == 0 or depth + size <= capacity

    def _sink_depth(self) -> int:
        return self.sink_pending + self.tracker.held()

    def _move_held(self) -> None:
        """Move finished batches downstream while the next pipe has room (last stage first).

        In ordered mode the oldest open sequence may always move on: the batches held
        for reordering at the sink could otherwise fill every pipe and wait for it forever.
        A pipe's depth can so exceed its bound by the pieces of that one oldest batch.
        """
        for runtime in reversed(self.stages):
            if self.options.ordered and runtime.held:
                oldest = [bundle for bundle in runtime.held if self.tracker.is_head(bundle[0].name[0])]
                for bundle in oldest:
                    runtime.held.remove(bundle)
                    self._enter_next(runtime, bundle)
            while runtime.held:
                bundle = runtime.held[0]
                if not self._fits(self._next_depth(runtime), self._next_capacity(runtime), len(bundle)):
                    break
                runtime.held.popleft()
                self._enter_next(runtime, bundle)

    def _next_depth(self, runtime: StageRuntime) -> int:
        if runtime.index + 1 < len(self.stages):
            return self.stages[runtime.index + 1].depth()
        return self._sink_depth()

    def _next_capacity(self, runtime: StageRuntime) -> int:
        if runtime.index + 1 < len(self.stages):
            return self.stages[runtime.index + 1].stage.pipe_capacity
        return self.options.sink_capacity

    def _enter_next(self, runtime: StageRuntime, bundle: list[Piece]) -> None:
        if runtime.index + 1 < len(self.stages):
            target = self.stages[runtime.index + 1]
            target.ready.extend(bundle)
            target.metrics.note_depth(target.depth())
            return
        seq = bundle[0].name[0]
        for piece in bundle:
            self.tracker.arrive(seq, piece.name, piece)
        self._release_to_sink()

    def _release_to_sink(self) -> None:
        released = self.tracker.take_released()
        with self.lock:
            self.sink_pending += len(released)
        for piece in released:
            self.sink_queue.put(piece)
        self.sink_metrics.note_depth(self._sink_depth())

    def _dispatch(self, runtime: StageRuntime) -> None:
        limit = self.options.inflight_per_replica
        if runtime.stage.key is None:
            while runtime.ready:
                replica = min(runtime.active, key=lambda r: len(r.calls))
                if len(replica.calls) >= limit:
                    return
                self._submit(runtime, replica, runtime.ready.popleft())
            return
        waiting: deque[Piece] = deque()
        for piece in runtime.ready:
            replica = runtime.active[piece.route % len(runtime.active)]
            if len(replica.calls) >= limit:
                waiting.append(piece)
            else:
                self._submit(runtime, replica, piece)
        runtime.ready = waiting

    def _submit(self, runtime: StageRuntime, replica: Replica, piece: Piece) -> None:
        following = self.stages[runtime.index + 1] if runtime.index + 1 < len(self.stages) else None
        parts = len(following.active) if following is not None and following.stage.key else 1
        key = following.stage.key if parts > 1 and following is not None else None
        refs = replica.actor.process.options(num_returns=parts + 1).remote(piece.ref, key, parts)  # type: ignore[attr-defined]
        call = Call(runtime.index, replica, piece, list(refs[1:]))
        replica.calls[refs[0]] = call
        self.inflight[refs[0]] = call

    def _wait_for_completions(self) -> None:
        if not self.inflight:
            self.wakeup.wait(self.options.poll_interval_s)
            return
        refs = list(self.inflight)
        done, _ = ray.wait(refs, num_returns=1, timeout=self.options.poll_interval_s, fetch_local=False)
        if not done:
            return
        if len(refs) > 1:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        for ref in done:
            call = self.inflight.get(ref)
            if call is None:
                continue  # resent already: its replica died
            try:
                meta = ray.get(ref)
            except RayTaskError as exc:
                self._raise_configure_error(call)
                raise PipelineFailedError(f"stage {self.stages[call.stage_index].stage.id!r} failed: {exc}") from None
            except RayActorError as exc:
                if "creation task" in str(exc):
                    # The replica could not even start (e.g. its filter does not unpickle
                    # on the workers): restarting it would fail the same way.
                    raise PipelineFailedError(
                        f"stage {self.stages[call.stage_index].stage.id!r}: a replica failed to start: {exc}"
                    ) from None
                self._replace_replica(self.stages[call.stage_index], call.replica)
                continue
            self._complete(ref, call, meta)

    def _raise_configure_error(self, call: Call) -> None:
        """If the replica never got its filter (e.g. it does not unpickle on the workers), say so."""
        try:
            ray.get(call.replica.configured, timeout=0)
        except RayTaskError as exc:
            raise PipelineFailedError(
                f"stage {self.stages[call.stage_index].stage.id!r}: its filter could not be loaded on a replica: {exc}"
            ) from None
        except Exception:  # not done or fine: the call's own error is the story
            return

    def _complete(self, ref: ray.ObjectRef, call: Call, meta: dict[str, object]) -> None:
        del self.inflight[ref]
        del call.replica.calls[ref]
        runtime = self.stages[call.stage_index]
        part_rows: list[int] = meta["part_rows"]  # type: ignore[assignment]
        split = len(call.out_refs) > 1
        bundle = [
            Piece(call.piece.name + ((i,) if split else ()), out_ref, rows, i)
            for i, (out_ref, rows) in enumerate(zip(call.out_refs, part_rows))
            if rows > 0
        ]
        dead_rows = self.recorder.record_outcome(
            runtime.stage.id, meta["dead"], {"batch": batch_name(call.piece.name)}  # type: ignore[arg-type]
        )
        with self.lock:
            counters = runtime.metrics
            counters.batches_in += 1
            counters.rows_in += int(meta["rows_in"])  # type: ignore[arg-type]
            counters.rows_out += int(meta["rows_out"])  # type: ignore[arg-type]
            counters.batches_out += 1 if bundle else 0
            counters.errors += int(meta["errors"])  # type: ignore[arg-type]
            counters.busy_s += float(meta["busy_s"])  # type: ignore[arg-type]
            counters.dead_letters += dead_rows
        self.tracker.fork(call.piece.name[0], len(bundle))
        if bundle:
            runtime.held.append(bundle)
        else:
            self._release_to_sink()

    def _replace_replica(self, runtime: StageRuntime, replica: Replica) -> None:
        """A replica died: start a replacement and resend, in order, what it had in flight."""
        pieces = [call.piece for call in replica.calls.values()]
        for ref in replica.calls:
            self.inflight.pop(ref, None)
        replica.calls.clear()
        runtime.ready.extendleft(reversed(pieces))
        if replica in runtime.active:
            runtime.active[runtime.active.index(replica)] = runtime.new_replica()
        elif replica in runtime.retiring:
            runtime.retiring.remove(replica)
        with self.lock:
            runtime.metrics.replica_restarts += 1
        if runtime.metrics.replica_restarts > self.options.max_replica_restarts:
            raise PipelineFailedError(
                f"stage {runtime.stage.id!r}: replicas died {runtime.metrics.replica_restarts} times "
                f"(more than max_replica_restarts={self.options.max_replica_restarts})"
            )

    def _apply_scaling(self) -> None:
        now = time.monotonic()
        with self.lock:
            requests, self.scale_requests = self.scale_requests, {}
        for runtime in self.stages:
            target = requests.get(runtime.index)
            if target is None and runtime.autoscaler is not None:
                target = runtime.autoscaler.decide(len(runtime.ready) + runtime.inflight(), len(runtime.active), now)
            if target is not None and target != len(runtime.active):
                while len(runtime.active) < target:
                    runtime.active.append(runtime.new_replica())
                while len(runtime.active) > target:
                    runtime.retiring.append(runtime.active.pop())
            for replica in [r for r in runtime.retiring if not r.calls]:
                runtime.retiring.remove(replica)
                REPLICA_POOL.release(replica.actor, runtime.stage.num_cpus)
            runtime.metrics.replicas = len(runtime.active)

    def _all_done(self) -> bool:
        source_done = self.source_finished.is_set() and self.source_queue.empty()
        if not source_done:
            return False
        if any(runtime.depth() for runtime in self.stages):
            return False
        with self.lock:
            return self._sink_depth() == 0

    # -- ending ----------------------------------------------------------------------

    def _kill_replicas(self) -> None:
        """Give idle replicas of a clean run back to the pool; kill the others."""
        clean = self.error is None and not self.cancelled.is_set()
        for runtime in self.stages:
            for replica in runtime.active + runtime.retiring:
                try:
                    if clean and not replica.calls:
                        REPLICA_POOL.release(replica.actor, runtime.stage.num_cpus)
                    else:
                        ray.kill(replica.actor)  # type: ignore[arg-type]
                except Exception:  # already gone
                    pass
            runtime.active, runtime.retiring = [], []

    def _finish(self) -> None:
        if self.cancelled.is_set():
            status = "cancelled"
        elif isinstance(self.pipeline.source, LiveFeed) or self.read_everything:
            status = "completed"
        else:
            status = "drained"
        self.result = PipelineResult(
            status=status,
            metrics=self.metrics_snapshot(),
            table=self._sink_table,
            elapsed_s=time.perf_counter() - self._started,
            dead_letter_ids=list(self.recorder.letter_ids),
            unstored_dead=list(self.recorder.unstored),
        )
        self.finished.set()

    def _note_depths(self) -> None:
        with self.lock:
            for runtime in self.stages:
                runtime.metrics.note_depth(runtime.depth())
            self.sink_metrics.note_depth(self._sink_depth())

    def metrics_snapshot(self) -> dict[str, StageMetrics]:
        """A copy of every stage's metrics (and the sink's), consistent per stage."""
        with self.lock:
            snapshot = {runtime.stage.id: StageMetrics(**runtime.metrics.as_dict()) for runtime in self.stages}
            snapshot["sink"] = StageMetrics(**self.sink_metrics.as_dict())
            return snapshot
