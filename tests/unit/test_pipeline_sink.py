"""Unit tests: sink writes through retry and the circuit breaker, with a fake clock (no Ray)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

import engine
from engine import CallbackSink, CollectSink, ParquetSink, Pipeline, PipelineOptions, Stage, TableSource
from engine.common.circuit_breaker import CLOSED, OPEN
from engine.common.retry import RetryPolicy
from engine.errors import PipelineFailedError, TransientError
from engine.pipeline.delivery import SinkDriver
from engine.pipeline.spec import AutoscalePolicy, SinkBreakerPolicy

pytestmark = pytest.mark.unit

TABLE = pa.table({"x": [1]})


class FakeTime:
    """A clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """A sink callback failing transiently ``failures`` times, then working."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or TransientError("service busy")
        self.attempts = 0
        self.written: list[int] = []

    def __call__(self, table: pa.Table) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise self.error
        self.written += table["x"].to_pylist()


def driver(callback: Flaky, time: FakeTime, retry: RetryPolicy | None = None,
           policy: SinkBreakerPolicy | None = SinkBreakerPolicy(failure_threshold=3, reset_timeout_s=10.0)) -> SinkDriver:
    sink = SinkDriver(CallbackSink(callback), retry, policy, clock=time.clock, sleep=time.sleep)
    sink.open()
    return sink


def test_a_flaky_sink_recovers_through_half_open() -> None:
    time, flaky = FakeTime(), Flaky(failures=3)
    sink = driver(flaky, time)
    assert sink.write("b0", TABLE) == 3
    assert flaky.written == [1] and flaky.attempts == 4  # 3 failures open the breaker, 1 trial
    assert time.sleeps == [10.0]  # it waited the reset timeout once instead of hammering
    assert sink.breaker is not None and sink.breaker.state == CLOSED and sink.breaker.times_opened == 1
    flaky.failures = 3
    sink.write("b1", TABLE)  # recovered: the trials are given back
    assert flaky.written == [1, 1] and sink.breaker.times_opened == 2
    assert sink.write("b2", TABLE) == 0


def test_a_dead_sink_fails_after_the_breaker_opens_naming_the_sink_and_the_last_error() -> None:
    time, dead = FakeTime(), Flaky(failures=10**9, error=TransientError("connection refused"))
    sink = driver(dead, time)
    with pytest.raises(PipelineFailedError) as failure:
        sink.write("b0", TABLE)
    message = str(failure.value)
    assert message.startswith("sink CallbackSink failed: its circuit breaker opened after 3 consecutive failed writes")
    assert message.endswith("last error: TransientError: connection refused")
    assert isinstance(failure.value.__cause__, TransientError)
    assert dead.attempts == 4 and time.sleeps == [10.0]  # 3, a pause, 1 trial: then it gives up
    assert sink.breaker is not None and sink.breaker.state == OPEN


def test_each_breaker_failure_is_a_write_that_failed_after_its_retries() -> None:
    time, flaky = FakeTime(), Flaky(failures=5)
    retry = RetryPolicy(max_attempts=2, base_delay_s=0.5, jitter=0.0)
    sink = driver(flaky, time, retry, SinkBreakerPolicy(failure_threshold=2, reset_timeout_s=10.0, half_open_trials=2))
    sink.write("b0", TABLE)
    # attempts: (fail, fail) (fail, fail) -> open; pause; trial (fail, ok) -> closed.
    assert flaky.attempts == 6 and flaky.written == [1]
    assert time.sleeps == [0.5, 0.5, 10.0, 0.5]
    assert sink.breaker is not None and sink.breaker.state == CLOSED


def test_a_non_transient_error_fails_at_once_and_without_a_breaker_after_the_retries() -> None:
    time = FakeTime()
    broken = Flaky(failures=1, error=OSError("disk full"))
    with pytest.raises(PipelineFailedError, match=r"^sink CallbackSink failed: OSError: disk full$"):
        driver(broken, time).write("b0", TABLE)
    assert broken.attempts == 1 and time.sleeps == []
    flaky = Flaky(failures=1)
    with pytest.raises(PipelineFailedError, match="TransientError: service busy"):
        driver(flaky, time, policy=None).write("b0", TABLE)


def test_a_sink_that_cannot_open_says_so(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    sink = SinkDriver(ParquetSink(str(not_a_directory)), None, None)
    with pytest.raises(PipelineFailedError, match=r"^sink ParquetSink failed to open: ") as failure:
        sink.open()
    assert failure.value.__cause__ is not None


def test_an_inline_run_whose_sink_cannot_open_fails_through_result(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    pipeline = Pipeline(TableSource(TABLE), [Stage("id", lambda b: b)], ParquetSink(str(not_a_directory)))
    handle = engine.run(pipeline, "inline")
    with pytest.raises(PipelineFailedError, match="sink ParquetSink failed to open"):
        handle.result(timeout_s=60)
    assert handle.status()["state"] == "failed" and "ParquetSink" in handle.status()["error"]


def test_an_inline_run_rides_out_a_flaky_sink_and_fails_on_a_dead_one() -> None:
    breaker = SinkBreakerPolicy(failure_threshold=2, reset_timeout_s=0.001)
    flaky = Flaky(failures=2)
    options = PipelineOptions(sink_breaker=breaker)
    result = engine.run(Pipeline(TableSource(pa.table({"x": [1, 2, 3]}), 1), [Stage("id", lambda b: b)],
                                 CallbackSink(flaky), options), "inline").result(timeout_s=60)
    assert flaky.written == [1, 2, 3] and result.metrics["sink"].rows_in == 3
    assert result.metrics["sink"].errors == 2  # failed writes
    dead = Flaky(failures=10**9)
    handle = engine.run(Pipeline(TableSource(TABLE), [Stage("id", lambda b: b)], CallbackSink(dead), options), "inline")
    with pytest.raises(PipelineFailedError, match="circuit breaker opened.*TransientError: service busy"):
        handle.result(timeout_s=60)
    assert dead.attempts == 3


def test_sink_breaker_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        SinkBreakerPolicy(failure_threshold=0)
    with pytest.raises(ValueError, match="reset_timeout_s"):
        SinkBreakerPolicy(reset_timeout_s=-1)
    with pytest.raises(TypeError, match="sink_breaker"):
        PipelineOptions(sink_breaker="often")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reserved"):
        Pipeline(TableSource(TABLE), [Stage("sink", lambda b: b)], CollectSink())


def test_resume_needs_a_sink_that_remembers_its_commits(tmp_path: Path) -> None:
    from engine.errors import SpecError

    pipeline = Pipeline(TableSource(TABLE), [Stage("id", lambda b: b)], CollectSink())
    with pytest.raises(SpecError, match="^resume needs a sink that remembers its commits .*a CollectSink$"):
        engine.run(pipeline, "inline", resume=True)
    scaled = Stage("keyed", lambda b: b, key="x", autoscale=AutoscalePolicy(1, 2))
    with pytest.raises(SpecError, match="^resume needs fixed replica counts on keyed stages; stage 'keyed' autoscales$"):
        engine.run(Pipeline(TableSource(TABLE), [scaled], ParquetSink(str(tmp_path / "scaled"))), "inline", resume=True)
    out, six = tmp_path / "out", pa.table({"x": [1, 2, 3, 4, 5, 6]})
    first = engine.run(Pipeline(TableSource(six, 2), [Stage("id", lambda b: b)], ParquetSink(str(out))),
                       "inline").result(timeout_s=60)
    again = engine.run(Pipeline(TableSource(six, 2), [Stage("id", lambda b: b)], ParquetSink(str(out))),
                       "inline", resume=True).result(timeout_s=60)
    assert first.metrics["sink"].batches_in == again.resumed_batches == 3  # all held: nothing delivered
    assert again.metrics["sink"].batches_in == 0
    assert sorted(ParquetSink(str(out)).read().column(0).to_pylist()) == [1, 2, 3, 4, 5, 6]
