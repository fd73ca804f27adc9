"""The flow-control state machine of one pipeline run, shared by both executors.

``FlowCore.handle(event) -> actions``: the executors (``local.py`` inline, ``coordinator.py``
on Ray) turn actions into filter calls, sink writes and replica starts, and what happens
into events.  The core never calls user code, never blocks and never imports Ray; its
clock is injectable.  The rules it keeps:

- **Bounded pipes.** A batch is read only when stage 0's pipe has room (``wants_input``);
  a finished output moves on only when the next pipe has room (``pipes.fits``), else it
  is held and its stage's pipe stays full, which stops the stage before it, and so on up
  to the source.  Memory is bounded by the sum of the pipe bounds.
- **Ordered runs** release pieces to the sink in source order (``SequenceTracker``).  The
  oldest open sequence may always move on between stages, whatever their bounds:
  otherwise pieces held for reordering at the sink could fill every pipe and wait for it
  forever.  So a stage's pipe may exceed its bound, but only by the units of that one
  oldest batch (at most the product of the keyed stages' replica counts).  Into the
  sink's pipe the oldest batch waits only for the deliveries not yet committed (which
  drain by themselves), not for the pieces held for reordering, so the sink's pipe holds
  at most twice its bound plus the pieces of one batch.
- **Key routing**: a keyed stage's pieces carry their route (``hash(key) mod replicas``,
  split by the stage before it, or by the core for stage 0) and go to that replica slot;
  other stages pick the least-loaded replica.  A replica takes at most
  ``inflight_per_replica`` calls.
- **Replica death**: the calls a dead replica had in flight are resent, in order, to
  its replacement (same slot, so same keys); completions of lost calls are ignored
  (at-least-once execution).  The sink commits each piece name once (exactly-once
  delivery for deterministic filters; ``ledger.SinkLedger``).  Dead rows are recorded once
  per completed call.
- **Resume**: given the batch names an earlier run of the same pipeline committed (a
  deterministic source gives the same batches the same names), pieces of those names are
  not delivered again.
- **Chained stages** (``StagePlan.members``): a link's later stages run in the same call
  as its first one, so the core sees one stage with one pipe; a call's ``meta`` reports
  each stage's counters and dead rows, which the core books under that stage's id.
- **The end**: once the source has ended and every piece read has been delivered (or
  dropped by a filter, or dead-lettered), the core says ``Finish``.
"""

from __future__ import annotations

import time
from typing import Callable

from engine.common.bad_records import describe_error
from engine.errors import PipelineFailedError
from engine.pipeline.batches import split_by_key
from engine.pipeline.dead_letters import read_dead_group
from engine.pipeline.flow import events as ev
from engine.pipeline.flow.ledger import SinkLedger
from engine.pipeline.flow.pipes import Call, Piece, Replica, StagePipe, fits
from engine.pipeline.flow.replicas import ReplicaRules
from engine.pipeline.flow.plan import FlowPlan
from engine.pipeline.ordering import SequenceTracker
from engine.pipeline.result import StageMetrics

class FlowCore(ReplicaRules):
    """One run's pipes, replicas, ordering and sink bookkeeping (see the module docstring).

    Call ``start()`` once, then ``handle(event)`` for each event; both return the actions
    to carry out, in order.  After ``Finish`` or ``Fail`` every event is ignored.
    """

    def __init__(self, plan: FlowPlan, clock: Callable[[], float] = time.monotonic) -> None:
        self.plan = plan
        self._clock = clock
        self.stages = [StagePipe(i, stage) for i, stage in enumerate(plan.stages)]
        self.tracker: SequenceTracker[Piece] = SequenceTracker(plan.ordered)
        self.source_metrics = StageMetrics("source", replicas=0)
        self.sink_metrics = StageMetrics("sink", replicas=1)
        self.outcome: str | None = None  # completed, drained, cancelled or failed
        self.error: PipelineFailedError | None = None
        self._calls: dict[int, Call] = {}
        self.ledger = SinkLedger()
        self._next_seq = self._next_call = self._next_replica = 0
        self._source_open = True
        self._exhausted = False
        self._started = False
        self._actions: list[ev.Action] = []

    # -- queries ---------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the run has finished, failed or been cancelled."""
        return self.outcome is not None

    def wants_input(self) -> bool:
        """Whether the executor may read one more batch from the source now."""
        if not self._started or self.outcome is not None or not self._source_open:
            return False
        first = self.stages[0]
        return fits(first.depth(), first.plan.pipe_capacity, first.split_parts())

    def replicas(self, stage: int) -> list[int]:
        """The active replica ids of a stage, in slot order."""
        return [r.replica_id for r in self.stages[stage].active]

    def sink_depth(self) -> int:
        """Units in the sink's pipe: deliveries not yet committed, plus pieces held for ordering."""
        return len(self.ledger) + self.tracker.held()

    def pipe_depth(self, index: int) -> int:
        """Depth of pipe ``index``: a stage's input pipe, or the sink's for ``len(stages)``."""
        return self.stages[index].depth() if index < len(self.stages) else self.sink_depth()

    def head_units(self, index: int) -> int:
        """Units of pipe ``index`` that belong to the oldest open sequence (0 if unordered)."""
        head = self.tracker.head()
        if not self.plan.ordered or head is None:
            return 0
        if index < len(self.stages):
            return self.stages[index].units_of(head)
        return self.tracker.held_of(head)

    def metrics(self) -> dict[str, StageMetrics]:
        """A copy of every stage's metrics, plus ``"source"`` and ``"sink"``."""
        snapshot = {}
        for stage in self.stages:
            for counters in [stage.metrics, *stage.member_metrics]:
                snapshot[counters.stage_id] = StageMetrics(**counters.as_dict())
        snapshot["source"] = StageMetrics(**self.source_metrics.as_dict())
        snapshot["sink"] = StageMetrics(**self.sink_metrics.as_dict())
        return snapshot

    # -- driving ---------------------------------------------------------------------

    def start(self) -> list[ev.Action]:
        """Start every stage's replicas."""
        if self._started:
            raise RuntimeError("FlowCore.start() was called twice")
        self._started = True
        for stage in self.stages:
            for _ in range(stage.plan.replicas):
                stage.active.append(self._new_replica(stage))
        return self._flush()

    def resume_from(self, committed: frozenset[str]) -> None:
        """Before ``start()``: the batch names the sink holds from an earlier run."""
        if self._started:
            raise RuntimeError("FlowCore.resume_from() after start()")
        self.ledger = SinkLedger(committed)

    def handle(self, event: ev.Event) -> list[ev.Action]:
        """Apply one event; returns the actions it leads to, in order."""
        if not self._started:
            raise RuntimeError("FlowCore.handle() before start()")
        if self.outcome is not None:
            return []
        handler = _HANDLERS.get(type(event))
        if handler is None:
            raise TypeError(f"FlowCore cannot handle {type(event).__name__}")
        handler(self, event)
        if self.outcome is None:
            self._pump()
        return self._flush()

    # -- event handlers --------------------------------------------------------------

    def _on_batch_read(self, event: ev.BatchRead) -> None:
        batch, table = event.batch, event.batch.table
        if not self._source_open:
            raise RuntimeError("FlowCore: a batch was read after the source ended")
        source = self.source_metrics
        source.batches_in += 1
        source.rows_in += table.num_rows + len(batch.bad_records)
        if batch.bad_records:
            group, origin = read_dead_group(batch)
            source.dead_letters += len(batch.bad_records)
            self._actions.append(ev.RecordDead("read", (group,), origin, f"read-{source.batches_in}"))
        if table.num_rows == 0:
            return
        if not self.wants_input():
            raise RuntimeError("FlowCore: a batch was read while stage 0's pipe had no room")
        first = self.stages[0]
        parts = first.split_parts()
        if parts > 1:
            try:
                tables = split_by_key(table, first.key, parts)  # type: ignore[arg-type]
            except KeyError as error:
                self._fail(f"stage {first.plan.id!r} failed: {describe_error(error).one_line()}", error)
                return
            pieces = [Piece((self._next_seq, i), t, t.num_rows, i) for i, t in enumerate(tables) if t.num_rows]
        else:  # one piece: the batch's rows, by reference when the shell gave one
            pieces = [Piece((self._next_seq,), table if batch.remote is None else batch.remote, table.num_rows, 0)]
        self.tracker.open(self._next_seq, len(pieces))
        self._next_seq += 1
        first.ready.extend(pieces)
        source.batches_out += 1
        source.rows_out += table.num_rows

    def _on_source_ended(self, event: ev.SourceEnded) -> None:
        self._source_open = False
        self._exhausted = event.exhausted

    def _on_source_failed(self, event: ev.SourceFailed) -> None:
        self._fail(f"source {self.plan.source_name} failed: {describe_error(event.error).one_line()}", event.error)

    def _on_call_completed(self, event: ev.CallCompleted) -> None:
        call = self._calls.pop(event.call_id, None)
        if call is None:
            return  # a call of a replica that died: its piece was resent
        del call.replica.calls[event.call_id]
        stage = self.stages[call.stage]
        meta = event.meta
        part_rows = list(meta["part_rows"])
        if len(part_rows) != len(event.outputs):
            raise RuntimeError(f"FlowCore: call {event.call_id} gave {len(event.outputs)} outputs "
                               f"for {len(part_rows)} parts")
        split = len(event.outputs) > 1
        bundle = [Piece(call.piece.name + ((i,) if split else ()), output, rows, i)
                  for i, (output, rows) in enumerate(zip(event.outputs, part_rows)) if rows > 0]
        # A link's later stages report in meta["members"], in order, each for the rows the
        # stage before it let through (a stage that got no rows did not run).
        steps = [(stage.plan.id, stage.metrics, meta)]
        steps += [(m.stage_id, m, member) for m, member in zip(stage.member_metrics, meta.get("members", ()))]
        name = ev.batch_name(call.piece.name)
        for position, (stage_id, counters, counts) in enumerate(steps):
            if position and not counts["ran"]:
                break
            last = position == len(steps) - 1
            counters.batches_in += 1
            counters.rows_in += int(counts["rows_in"])
            counters.rows_out += int(counts["rows_out"])
            counters.batches_out += (1 if bundle else 0) if last else (1 if int(counts["rows_out"]) else 0)
            counters.errors += int(counts["errors"])
            counters.busy_s += float(counts["busy_s"])
            dead = tuple(counts["dead"])
            if dead:
                counters.dead_letters += sum(rows.num_rows for rows, _, _ in dead)
                self._actions.append(ev.RecordDead(stage_id, dead, {"batch": name}, name))
        self.tracker.fork(call.piece.seq, len(bundle))
        if bundle:
            stage.held.append(bundle)
        self._retire_idle(stage)

    def _on_call_failed(self, event: ev.CallFailed) -> None:
        call = self._calls.get(event.call_id)
        if call is not None:
            self._fail(f"stage {self.stages[call.stage].plan.id!r} failed: {event.reason}", event.error)

    def _on_sink_committed(self, event: ev.SinkCommitted) -> None:
        oldest = self.tracker.head()
        rows = self.ledger.commit(event.name, self._next_seq if oldest is None else oldest)
        if rows is None:
            return
        sink = self.sink_metrics
        sink.batches_in += 1
        sink.batches_out += 1
        sink.rows_in += rows
        sink.rows_out += rows
        sink.errors += event.failed_writes

    def _on_sink_failed(self, event: ev.SinkFailed) -> None:
        if isinstance(event.error, PipelineFailedError):
            self._fail_with(event.error)
        else:
            self._fail(f"sink {self.plan.sink_name} failed: {describe_error(event.error).one_line()}", event.error)

    def _on_cancel(self, event: ev.Cancel) -> None:
        self.outcome = "cancelled"
        self._actions.append(ev.Finish("cancelled"))

    # -- the rules -------------------------------------------------------------------

    def _pump(self) -> None:
        """Move held outputs downstream, dispatch ready pieces, deliver, and see if it is over."""
        for stage in reversed(self.stages):  # the last first: room it frees is used upstream
            self._move_held(stage)
        limit = self.plan.inflight_per_replica
        for stage in self.stages:
            for call in stage.dispatch(limit, lambda replica, piece, s=stage: self._new_call(s, replica, piece)):
                following = self.stages[stage.index + 1] if stage.index + 1 < len(self.stages) else None
                parts = following.split_parts() if following is not None else 1
                key = following.key if following is not None and parts > 1 else None
                self._actions.append(ev.Submit(call.call_id, stage.index, call.replica.replica_id, call.piece.name,
                                               call.piece.payload, key, parts))
        self._release_to_sink()
        for stage in self.stages:
            stage.metrics.note_depth(stage.depth())
        self.sink_metrics.note_depth(self.sink_depth())
        if self._all_delivered():
            self.outcome = "completed" if self._exhausted else "drained"
            self._actions.append(ev.Finish(self.outcome))

    def _move_held(self, stage: StagePipe) -> None:
        while stage.held:
            bundle = self._movable(stage)
            if bundle is None:
                return
            stage.held.remove(bundle)
            if stage.index + 1 < len(self.stages):
                self.stages[stage.index + 1].ready.extend(bundle)
            else:
                for piece in bundle:
                    self.tracker.arrive(piece.seq, piece.name, piece)
                self._release_to_sink()  # at once: the sink's depth must count what just arrived

    def _movable(self, stage: StagePipe) -> list[Piece] | None:
        """The next held bundle allowed downstream: the oldest sequence's (ordered runs),
        else the first one if the next pipe has room for it."""
        last = stage.index + 1 == len(self.stages)
        if self.plan.ordered:
            head = self.tracker.head()
            for bundle in stage.held:
                if bundle[0].seq == head and (not last or fits(len(self.ledger), self.plan.sink_capacity,
                                                               len(bundle))):
                    return bundle
        first = stage.held[0]
        if not last:
            following = self.stages[stage.index + 1]
            room = fits(following.depth(), following.plan.pipe_capacity, len(first))
        else:
            room = fits(self.sink_depth(), self.plan.sink_capacity, len(first))
        return first if room else None

    def _release_to_sink(self) -> None:
        for piece in self.tracker.take_released():
            if self.ledger.take(piece.name, piece.rows):  # the exactly-once rule: one commit per name
                self._actions.append(ev.Deliver(piece.name, piece.payload, piece.rows))

    def _all_delivered(self) -> bool:
        return (not self._source_open and not self._calls and not self.ledger
                and self.tracker.open_sequences() == 0 and all(stage.depth() == 0 for stage in self.stages))

    def _new_call(self, stage: StagePipe, replica: Replica, piece: Piece) -> Call:
        call = Call(self._next_call, stage.index, replica, piece)
        self._next_call += 1
        replica.calls[call.call_id] = call
        self._calls[call.call_id] = call
        return call

    def _fail(self, message: str, cause: BaseException | None = None) -> None:
        error = PipelineFailedError(message)
        error.__cause__ = cause
        self._fail_with(error)

    def _fail_with(self, error: PipelineFailedError) -> None:
        self.outcome, self.error = "failed", error
        self._actions.append(ev.Fail(error))

    def _flush(self) -> list[ev.Action]:
        actions, self._actions = self._actions, []
        return actions


_HANDLERS: dict[type, Callable[[FlowCore, object], None]] = {
    ev.BatchRead: FlowCore._on_batch_read,
    ev.SourceEnded: FlowCore._on_source_ended,
    ev.SourceFailed: FlowCore._on_source_failed,
    ev.CallCompleted: FlowCore._on_call_completed,
    ev.CallFailed: FlowCore._on_call_failed,
    ev.ReplicaDied: FlowCore._on_replica_died,
    ev.ReplicaStartFailed: FlowCore._on_replica_start_failed,
    ev.SinkCommitted: FlowCore._on_sink_committed,
    ev.SinkFailed: FlowCore._on_sink_failed,
    ev.ScaleRequested: FlowCore._on_scale,
    ev.Tick: FlowCore._on_tick,
    ev.Cancel: FlowCore._on_cancel,
}
