"""The inline executor's shell: drives the flow core synchronously, in this process, no Ray.

It is the oracle the Ray executor is tested against, and a debugging aid.  The same
core as on Ray decides what is read, submitted, held and delivered; here a "replica" is
just a name, and a submitted call is run in the driver (``filtering.process_batch``) one
at a time, in submission order.  Calls are run before more input is read, so a batch
goes through every stage before the next one is read (unless the pipes allow more).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable, Iterator

from engine.common.bad_records import describe_error
from engine.errors import PipelineFailedError
from engine.io.sources import SourceBatch
from engine.pipeline.filtering import process_batch
from engine.pipeline.flow import events as ev
from engine.pipeline.result import PipelineResult
from engine.pipeline.shell import PipelineRun
from engine.pipeline.spec import Pipeline


class InlineRun(PipelineRun):
    """One inline run; ``run()`` returns when the run is over (see ``PipelineRun``)."""

    executor_name = "inline"

    def __init__(self, pipeline: Pipeline, clock: Callable[[], float] = time.monotonic, resume: bool = False) -> None:
        super().__init__(pipeline, clock, resume)
        self._sink = self.new_sink_driver(clock)
        self._calls: deque[ev.Submit] = deque()
        self._reader: Iterator[SourceBatch] | None = None

    def run(self) -> None:
        table, error = None, None
        try:
            self._drive()
            if self.core.outcome in ("completed", "drained"):
                table = self._sink.close()
        except BaseException as exc:  # surfaced by result()
            error = exc
        finally:
            self.conclude(table, error)

    def _drive(self) -> None:
        error = self.open_sink(self._sink)
        self._apply(self.start_core())
        if error is not None:
            self._feed(ev.SinkFailed(error))
            return
        while not self.core.finished:
            for event in self.take_requests():
                self._feed(event)
            if self.core.finished:
                return
            self._feed(ev.Tick())
            if self._calls:
                self._feed(self._call(self._calls.popleft()))
            elif self.core.wants_input():
                self._feed(self._read())
            elif not self.core.finished:
                raise PipelineFailedError("the inline pipeline stalled: nothing to run and no room to read "
                                          "(a bug in the flow core)")

    def _read(self) -> ev.Event:
        if self.stop_reading.is_set():
            return ev.SourceEnded(exhausted=False)
        try:
            if self._reader is None:
                self._reader = iter(self.pipeline.source.read())
            return ev.BatchRead(next(self._reader))
        except StopIteration:
            return ev.SourceEnded(exhausted=True)
        except Exception as error:
            return ev.SourceFailed(error)

    def _call(self, submit: ev.Submit) -> ev.Event:
        try:
            meta, parts = process_batch(self.link_filters(submit.stage), submit.payload,  # type: ignore[arg-type]
                                        submit.next_key, submit.parts)
        except Exception as error:
            return ev.CallFailed(submit.call_id, describe_error(error).one_line(), error)
        return ev.CallCompleted(submit.call_id, meta, tuple(parts))

    def _feed(self, event: ev.Event) -> None:
        self._apply(self.handle(event))

    def _apply(self, actions: list[ev.Action]) -> None:
        """Carry out actions in order; a sink commit's own actions queue behind them."""
        work = deque(actions)
        while work:
            action = work.popleft()
            if isinstance(action, ev.Submit):
                self._calls.append(action)
            elif isinstance(action, ev.Deliver):
                try:
                    failed = self._sink.write(action.batch_name, action.payload)  # type: ignore[arg-type]
                    follow: ev.Event = ev.SinkCommitted(action.name, failed)
                except PipelineFailedError as error:
                    follow = ev.SinkFailed(error)
                work.extend(self.handle(follow))
            elif isinstance(action, ev.RecordDead):
                self.record_dead(action)
            # StartReplica / RetireReplica: inline replicas are names; Finish / Fail: the core is over.


class LocalPipelineExecutor:
    """Runs a pipeline inline to completion in the calling thread."""

    def run(self, pipeline: Pipeline) -> PipelineResult:
        """Run ``pipeline`` and return its result (raises its ``PipelineFailedError``)."""
        run = InlineRun(pipeline)
        run.run()
        if run.error is not None:
            raise run.error
        assert run.result is not None
        return run.result
