"""The Ray shell of one pipeline run: turns the flow core's actions into Ray calls and
Ray completions into the core's events.

Every flow rule (bounded pipes, routing, ordering, resending a dead replica's calls,
exactly-once delivery, autoscaling, the end) lives in ``engine.pipeline.flow``; this
module only runs it on Ray.  Three threads of the driver: the coordinator (the only one
that feeds the core), a source reader filling a bounded queue (``source_capacity``), and
a sink writer (``delivery.SinkDriver``: retry and circuit breaker).  Batches move between
stages as object references; the coordinator reads only each call's small ``meta``.

Every wait on Ray is bounded, and each loop turn asks ``engine.cluster.node_loss()`` about
the cluster the run started on: a lost cluster ends the run at once with ``lost`` set (no
further Ray calls); the handle (``ray_executor.RayPipelineHandle``) decides what follows.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
import ray
from ray.exceptions import RayActorError, RayTaskError

from engine import cluster
from engine.common.bad_records import describe_error
from engine.errors import PipelineFailedError
from engine.io.sources import SourceBatch, TableSource
from engine.pipeline.flow import events as ev
from engine.pipeline.replica import REPLICA_POOL
from engine.pipeline.shell import PipelineRun
from engine.pipeline.source_blocks import RowWindow, SourceBlocks
from engine.pipeline.spec import Pipeline
from engine.runtime.node_watch import ClusterLost, NodeLoss

_STOP = object()


@dataclass
class _Actor:
    """A replica actor and the reference of its ``configure`` call."""

    actor: object
    configured: ray.ObjectRef


@dataclass
class _Flight:
    """A call in flight: the core's call id, where it runs, its output references."""

    call_id: int
    stage: int
    replica: int
    out_refs: list[ray.ObjectRef]


@dataclass(frozen=True)
class _SourceEnd:
    """The reader's last word: exhausted, stopped early, or failed."""

    exhausted: bool
    error: BaseException | None = None


class Coordinator(PipelineRun):
    """Runs one pipeline on Ray (``run()`` in the handle's thread)."""

    executor_name = "ray"

    def __init__(self, pipeline: Pipeline, resume: bool = False) -> None:
        super().__init__(pipeline, resume=resume)
        self._sink = self.new_sink_driver()
        self.source_queue: queue.Queue[SourceBatch | _SourceEnd] = queue.Queue(maxsize=pipeline.options.source_capacity)
        self.sink_queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.actors: dict[tuple[int, int], _Actor] = {}
        self.inflight: dict[ray.ObjectRef, _Flight] = {}
        self._shutdown = threading.Event()
        self._sink_table: pa.Table | None = None
        self._close_error: BaseException | None = None
        self.lost: NodeLoss | None = None  # the cluster loss that ended this run
        self.generation = cluster.generation()  # the cluster this run started on

    def replica_actors(self, stage: int) -> list[object]:
        """The actors of a link's active replicas, in slot order."""
        with self.lock:
            ids = self.core.replicas(stage)
        found = [self.actors.get((stage, replica)) for replica in ids]
        return [entry.actor for entry in found if entry is not None]

    # -- the coordinator thread --------------------------------------------------------

    def run(self) -> None:
        source_thread = threading.Thread(target=self._read_source, name="pipeline-source", daemon=True)
        sink_thread = threading.Thread(target=self._write_sink, name="pipeline-sink", daemon=True)
        error: BaseException | None = None
        try:
            open_error = self.open_sink(self._sink)  # here, not in the sink thread: the core must know a resumed sink
            self._apply(self.start_core())
            if open_error is not None:
                self._feed(ev.SinkFailed(open_error))
            else:
                source_thread.start()
                sink_thread.start()
            while not self.core.finished:
                self._check_cluster()
                self.wakeup.clear()  # before looking at the state: a later set() is seen
                for event in self.take_requests():
                    self._feed(event)
                self._admit()
                self._feed(ev.Tick())
                if not self.core.finished:
                    self._wait_for_completions()
        except ClusterLost as lost:  # the handle decides: restart and resume, or fail with one line
            self.lost, error = lost.loss, lost
        except BaseException as exc:  # surfaced by result()
            error = exc
        finally:
            self._shutdown.set()
            self.sink_queue.put(_STOP)
            if sink_thread.is_alive():
                sink_thread.join()
            if self.lost is None:
                self._release_replicas(clean=error is None and self.core.outcome in ("completed", "drained"))
            else:  # nothing left to release: the actors died with the cluster
                self.actors.clear()
                self.inflight.clear()
            self.conclude(self._sink_table, error or self._close_error)

    def _check_cluster(self) -> None:
        loss = cluster.node_loss(self.generation)
        if loss is not None:
            raise ClusterLost(loss)

    def _feed(self, event: ev.Event) -> None:
        self._apply(self.handle(event))

    def _apply(self, actions: list[ev.Action]) -> None:
        for action in actions:
            if isinstance(action, ev.Submit):
                actor = self.actors[(action.stage, action.replica)].actor
                payload = action.payload
                if isinstance(payload, RowWindow):
                    refs = actor.process_window.options(num_returns=action.parts + 1).remote(  # type: ignore[attr-defined]
                        payload.block, payload.offset, payload.rows, action.next_key, action.parts)
                else:
                    refs = actor.process.options(num_returns=action.parts + 1).remote(  # type: ignore[attr-defined]
                        payload, action.next_key, action.parts)
                self.inflight[refs[0]] = _Flight(action.call_id, action.stage, action.replica, list(refs[1:]))
            elif isinstance(action, ev.Deliver):
                self.sink_queue.put(action)
            elif isinstance(action, ev.RecordDead):
                self.record_dead(action)
            elif isinstance(action, ev.StartReplica):
                num_cpus = self.links[action.stage][0].num_cpus
                self.actors[(action.stage, action.replica)] = _Actor(
                    *REPLICA_POOL.acquire(self.link_filters(action.stage), num_cpus))
                if action.replaces is not None:
                    self._kill(self.actors.pop((action.stage, action.replaces), None))
            elif isinstance(action, ev.RetireReplica):
                entry = self.actors.pop((action.stage, action.replica), None)
                if entry is not None:
                    REPLICA_POOL.release(entry.actor, self.links[action.stage][0].num_cpus)

    def _admit(self) -> None:
        """Feed read batches to the core while stage 0 has room."""
        while self.core.wants_input():
            try:
                item = self.source_queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _SourceEnd):
                self._feed(ev.SourceFailed(item.error) if item.error is not None else ev.SourceEnded(item.exhausted))
                return
            self._feed(ev.BatchRead(item))

    def _wait_for_completions(self) -> None:
        poll = self.pipeline.options.poll_interval_s
        if not self.inflight:
            self.wakeup.wait(poll)
            return
        refs = list(self.inflight)
        done, _ = ray.wait(refs, num_returns=1, timeout=poll, fetch_local=False)
        if not done:
            return
        if len(refs) > 1:
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        for ref in done:
            flight = self.inflight.pop(ref, None)
            if flight is None:
                continue  # its replica died: the core resent the call
            try:
                meta = ray.get(ref)
            except RayTaskError as exc:
                self._feed(ev.CallFailed(flight.call_id, self._call_error(flight, exc), exc))
                continue
            except RayActorError as exc:
                self._replica_lost(flight, exc)
                continue
            self._feed(ev.CallCompleted(flight.call_id, meta, tuple(flight.out_refs)))

    def _call_error(self, flight: _Flight, exc: RayTaskError) -> str:
        """The error of a failed call; says so if the replica never got its filter."""
        entry = self.actors.get((flight.stage, flight.replica))
        if entry is not None:
            try:
                ray.get(entry.configured, timeout=0)
            except RayTaskError as configure_error:
                return f"its filter could not be loaded on a replica: {describe_error(configure_error).one_line()}"
            except Exception:  # not done, or fine: the call's own error is the story
                pass
        return describe_error(exc).one_line()

    def _replica_lost(self, flight: _Flight, exc: RayActorError) -> None:
        if "creation task" in str(exc):
            # The replica could not even start (e.g. its filter does not unpickle on the
            # workers): a replacement would fail the same way.
            self._feed(ev.ReplicaStartFailed(flight.stage, flight.replica, describe_error(exc).one_line()))
            return
        for ref in [r for r, f in self.inflight.items() if (f.stage, f.replica) == (flight.stage, flight.replica)]:
            del self.inflight[ref]
        self._kill(self.actors.pop((flight.stage, flight.replica), None))
        self._feed(ev.ReplicaDied(flight.stage, flight.replica))

    # -- the source and sink threads ---------------------------------------------------

    def _read_source(self) -> None:
        """Read batches into the bounded source queue until the source ends or the run
        stops reading; a batch once read is always offered (unless the run is over)."""
        end = _SourceEnd(exhausted=False)
        try:
            batches = iter(self._source_batches())
            while not (self.stop_reading.is_set() or self._shutdown.is_set()):
                batch = next(batches, None)
                if batch is None:
                    end = _SourceEnd(exhausted=True)
                    break
                self._offer(batch)
        except BaseException as exc:
            end = _SourceEnd(exhausted=False, error=exc)
        finally:
            self._offer(end)

    def _source_batches(self) -> Iterator[SourceBatch]:
        """The source's batches; an in-memory table's by reference to blocks in the object
        store when the cluster has one node and stage 0 takes whole batches."""
        source = self.pipeline.source
        if isinstance(source, TableSource) and self.pipeline.stages[0].key is None and cluster.alive_nodes() == 1:
            return SourceBlocks(source).read()
        return source.read()

    def _offer(self, item: SourceBatch | _SourceEnd) -> None:
        while not self._shutdown.is_set():
            try:
                self.source_queue.put(item, timeout=0.05)
            except queue.Full:
                continue
            self.wakeup.set()
            return

    def _write_sink(self) -> None:
        """Write deliveries in order; report each commit (or the failure) to the core."""
        driver = self._sink
        try:
            while True:
                item = self.sink_queue.get()
                if item is _STOP or self.cancelled.is_set():
                    break
                assert isinstance(item, ev.Deliver)
                table = item.payload if isinstance(item.payload, pa.Table) else self._fetch(item.payload)
                if table is None:  # the run is over (the cluster was lost)
                    break
                failed = driver.write(item.batch_name, table)
                self.request(ev.SinkCommitted(item.name, failed))
        except BaseException as exc:
            self.request(ev.SinkFailed(exc))
            return
        if self.core.outcome in ("completed", "drained"):
            try:
                self._sink_table = driver.close()
            except PipelineFailedError as exc:
                self._close_error = exc

    def _fetch(self, ref: ray.ObjectRef) -> pa.Table | None:
        """``ray.get(ref)`` in bounded waits; None once the run shuts down or the cluster is lost."""
        while not (self._shutdown.is_set() or self.cancelled.is_set()):
            ready, _ = ray.wait([ref], timeout=0.25, fetch_local=True)
            if ready:
                return ray.get(ref)
            if cluster.node_loss(self.generation) is not None:
                self.wakeup.set()  # the coordinator's next turn sees it
                return None
        return None

    # -- ending ------------------------------------------------------------------------

    def _release_replicas(self, clean: bool) -> None:
        """Give idle replicas of a clean run back to the pool; kill the others."""
        busy = {(flight.stage, flight.replica) for flight in self.inflight.values()}
        for (stage, replica), entry in list(self.actors.items()):
            if clean and (stage, replica) not in busy:
                try:
                    REPLICA_POOL.release(entry.actor, self.links[stage][0].num_cpus)
                except Exception:  # already gone
                    pass
            else:
                self._kill(entry)
        self.actors.clear()
        self.inflight.clear()

    @staticmethod
    def _kill(entry: _Actor | None) -> None:
        if entry is None:
            return
        try:
            ray.kill(entry.actor)  # type: ignore[arg-type]
        except Exception:  # already gone
            pass
