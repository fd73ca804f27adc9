"""How batches reach the sink: opened once per run, written through retry and a circuit breaker.

Both executors write through ``SinkDriver`` (inline in the run's thread, on Ray in the
sink thread of the driver); the flow core decides what is delivered, once per batch name.
A write failing transiently is retried per ``PipelineOptions.sink_retry``; a write that
still fails counts as one failure of the sink's ``CircuitBreaker``, and the write is
tried again until the breaker opens.  Then the sink is left alone for the breaker's
reset timeout, and a trial write decides: it recovers (the breaker closes) or, once the
trials of ``SinkBreakerPolicy`` are spent, the run fails with one error naming the sink
and its last error.  A write error that is not transient fails the run at once.
"""

from __future__ import annotations

import time
from typing import Callable

import pyarrow as pa

from engine.common.bad_records import describe_error
from engine.common.circuit_breaker import CircuitBreaker
from engine.common.retry import RetryPolicy, is_transient
from engine.errors import CircuitOpenError, PipelineFailedError, TransientError
from engine.io.sinks import Sink, SinkWriter
from engine.pipeline.spec import SinkBreakerPolicy


class SinkDriver:
    """One run's open sink: ``open()``, ``write(name, table)``, ``close()``.

    Every failure is raised as a ``PipelineFailedError`` naming the sink, with the sink's
    own error as its cause.  ``clock`` and ``sleep`` drive the breaker and the retries
    (inject them in tests; executors pass a sleep that a cancel interrupts).
    """

    def __init__(self, sink: Sink, retry: RetryPolicy | None, breaker: SinkBreakerPolicy | None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], object] = time.sleep) -> None:
        self.sink = sink
        self.name = f"sink {type(sink).__name__}"
        self.retry = retry
        self.policy = breaker
        self.transient: tuple[type[BaseException], ...] = retry.retry_on if retry is not None else (TransientError,)
        self.breaker = None if breaker is None else CircuitBreaker(
            self.name, breaker.failure_threshold, breaker.reset_timeout_s, clock=clock, failure_on=self.transient)
        self.failed_writes = 0
        self._clock = clock
        self._sleep = sleep
        self._writer: SinkWriter | None = None
        self._trials_left = breaker.half_open_trials if breaker is not None else 0
        self._last_error: BaseException | None = None

    def open(self, resume: bool = False) -> None:
        """Open the sink for this run (``resume``: keep what an earlier run committed)."""
        try:
            # Only a resume passes the flag: a user's Sink may define open() without it.
            self._writer = self.sink.open(resume=True) if resume else self.sink.open()
        except Exception as error:
            raise PipelineFailedError(f"{self.name} failed to open: {describe_error(error).one_line()}") from error

    def committed(self) -> frozenset[str]:
        """The batch names the open sink holds already (empty unless it has stable commits)."""
        return self._writer.committed() if self._writer is not None else frozenset()

    def run_token(self) -> str | None:
        """The open sink's run token (``SinkWriter.run_token``)."""
        return self._writer.run_token() if self._writer is not None else None

    def write(self, name: str, table: pa.Table) -> int:
        """Commit one batch; returns (how many failed writes it took) once the sink has it,
        raises once the sink is given up."""
        if self._writer is None:
            raise RuntimeError(f"{self.name}: write() before open()")
        failures_before = self.failed_writes
        while True:
            try:
                if self.breaker is None:
                    self._write_once(name, table)
                else:
                    self.breaker.call(self._write_once, name, table)
            except CircuitOpenError:
                assert self.breaker is not None and self.policy is not None
                if self._trials_left == 0:
                    raise PipelineFailedError(
                        f"{self.name} failed: its circuit breaker opened after {self.policy.failure_threshold} "
                        f"consecutive failed writes and no trial write succeeded; last error: "
                        f"{describe_error(self._last_error or 'unknown').one_line()}") from self._last_error
                self._trials_left -= 1
                self._sleep(self.breaker.retry_after_s())
                continue
            except Exception as error:
                self.failed_writes += 1
                self._last_error = error
                if self.breaker is None or not is_transient(error, self.transient):
                    raise PipelineFailedError(f"{self.name} failed: {describe_error(error).one_line()}") from error
                continue
            if self.policy is not None:
                self._trials_left = self.policy.half_open_trials
            return self.failed_writes - failures_before

    def close(self) -> pa.Table | None:
        """Finish the run's output (e.g. ``_SUCCESS``); a collecting sink returns its table."""
        if self._writer is None:
            return None
        try:
            return self._writer.close()
        except Exception as error:
            raise PipelineFailedError(f"{self.name} failed to close: {describe_error(error).one_line()}") from error

    def _write_once(self, name: str, table: pa.Table) -> None:
        assert self._writer is not None
        if self.retry is None:
            self._writer.write(name, table)
        else:
            self.retry.call(self._writer.write, name, table, sleep=self._sleep, clock=self._clock)
