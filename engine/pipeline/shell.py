"""What both executor shells share: the flow core behind a lock, requests from other
threads (scale, drain, cancel), dead-letter recording and the run's outcome.

A shell (``local.InlineRun``, ``coordinator.Coordinator``) runs ``run()`` in one thread:
it is the only thread that feeds the core.  Other threads (the handle, the Ray shell's
source and sink threads) only ``request`` events, which the shell feeds in its loop.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable

from engine.common.bad_records import describe_error
from engine.errors import PipelineFailedError
from engine.io.sources import LiveFeed
from engine.pipeline.dead_letters import DeadLetterRecorder
from engine.pipeline.delivery import SinkDriver
from engine.pipeline.flow import events as ev
from engine.pipeline.flow.core import FlowCore
from engine.pipeline.filtering import LinkStage
from engine.pipeline.flow.plan import FlowPlan
from engine.pipeline.result import PipelineResult, StageMetrics
from engine.pipeline.spec import Pipeline, Stage


class PipelineRun:
    """One run of a pipeline, whichever executor runs it (subclasses implement ``run``).

    ``resume``: the sink keeps what an earlier run of the same pipeline committed, and the
    batches it holds are not delivered again (``FlowCore.resume_from``).
    """

    executor_name = ""

    def __init__(self, pipeline: Pipeline, clock: Callable[[], float] = time.monotonic, resume: bool = False) -> None:
        self.pipeline = pipeline
        self.resume = resume
        self.run_token: str | None = None  # the sink's: it keys dead rows (a resumed run records them once)
        self.core = FlowCore(FlowPlan.from_pipeline(pipeline), clock)
        # The stages each link of the core runs (one unless chained), and what a call runs.
        self.links: tuple[tuple[Stage, ...], ...] = tuple(
            tuple(pipeline.stage(stage_id) for stage_id in link.stage_ids) for link in self.core.plan.stages)
        self._link_filters = tuple(tuple(LinkStage(s.id, s.fn, s.retry) for s in link) for link in self.links)
        self.lock = threading.Lock()
        self.recorder = DeadLetterRecorder(pipeline.options.dead_letter_dir)
        self.finished = threading.Event()
        self.cancelled = threading.Event()  # interrupts the sink's waits
        self.stop_reading = threading.Event()
        self.wakeup = threading.Event()
        self.error: PipelineFailedError | None = None
        self.result: PipelineResult | None = None
        self._requests: queue.SimpleQueue[ev.Event] = queue.SimpleQueue()
        self._started = time.perf_counter()

    def run(self) -> None:
        """Run the pipeline to its end, then ``conclude``."""
        raise NotImplementedError

    # -- from any thread -------------------------------------------------------------

    def request(self, event: ev.Event) -> None:
        """Queue an event for the shell's thread."""
        self._requests.put(event)
        self.wakeup.set()

    def request_scale(self, stage_id: str, replicas: int) -> None:
        """Ask for ``replicas`` replicas of a stage."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            raise ValueError(f"scale({stage_id!r}, ...): replicas must be an int >= 1, got {replicas!r}")
        self.request(ev.ScaleRequested(self.core.plan.link_of(self.pipeline.stage(stage_id).id), replicas))

    def request_drain(self) -> None:
        """End the input: close a live feed, or stop reading any other source."""
        source = self.pipeline.source
        if isinstance(source, LiveFeed):
            source.close()
        else:
            self.stop_reading.set()
        self.wakeup.set()

    def request_cancel(self) -> None:
        """Stop promptly (a live feed is closed: later pushes fail loudly)."""
        self.cancelled.set()
        if isinstance(self.pipeline.source, LiveFeed):
            self.pipeline.source.close()
        self.request(ev.Cancel())

    def link_filters(self, link: int) -> tuple[LinkStage, ...]:
        """What a call of link ``link`` runs: its stages' ids, filters and retry policies."""
        return self._link_filters[link]

    def metrics_snapshot(self) -> dict[str, StageMetrics]:
        """Every stage's metrics now, plus ``"source"`` and ``"sink"``."""
        with self.lock:
            return self.core.metrics()

    # -- from the shell's thread ------------------------------------------------------

    def take_requests(self) -> list[ev.Event]:
        """The events requested since the last call, in order."""
        events = []
        while True:
            try:
                events.append(self._requests.get_nowait())
            except queue.Empty:
                return events

    def new_sink_driver(self, clock: Callable[[], float] = time.monotonic) -> SinkDriver:
        """The run's sink driver (its waits end when the run is cancelled)."""
        options = self.pipeline.options
        return SinkDriver(self.pipeline.sink, options.sink_retry, options.sink_breaker, clock, self.cancelled.wait)

    def open_sink(self, driver: SinkDriver) -> PipelineFailedError | None:
        """Open the sink before ``start_core`` (resuming: tell the core what it holds);
        returns the error if it cannot open."""
        try:
            driver.open(resume=self.resume)
        except PipelineFailedError as error:
            return error
        self.run_token = driver.run_token()
        if self.resume:
            with self.lock:
                self.core.resume_from(driver.committed())
        return None

    def start_core(self) -> list[ev.Action]:
        """``core.start()`` under the lock."""
        with self.lock:
            return self.core.start()

    def handle(self, event: ev.Event) -> list[ev.Action]:
        """``core.handle(event)`` under the lock."""
        with self.lock:
            return self.core.handle(event)

    def record_dead(self, action: ev.RecordDead) -> None:
        """Store one ``RecordDead`` action's rows (keyed by the run token and the batch, if the
        sink has a run token)."""
        key = f"{self.run_token}:{action.key}" if self.run_token and action.key else None
        self.recorder.record_outcome(action.step, list(action.groups), action.source, key)

    def conclude(self, table: object, error: BaseException | None) -> None:
        """Set the result (or the error) and mark the run finished."""
        failure = error if error is not None else self.core.error
        if failure is not None and not isinstance(failure, PipelineFailedError):
            wrapped = PipelineFailedError(f"pipeline failed: {describe_error(failure).one_line()}")
            wrapped.__cause__ = failure
            failure = wrapped
        self.error = failure
        self.result = PipelineResult(
            status=self.core.outcome if self.core.outcome not in (None, "failed") else "failed",
            metrics=self.metrics_snapshot(),
            table=table if failure is None else None,  # type: ignore[arg-type]
            elapsed_s=time.perf_counter() - self._started,
            dead_letter_ids=list(self.recorder.letter_ids),
            unstored_dead=list(self.recorder.unstored),
            resumed_batches=self.core.ledger.skipped_batches,
        )
        self.finished.set()
