"""Unit tests of RetryPolicy: delays per backoff, jitter, attempt limit, time box, transience."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.retry import RetryPolicy, is_transient

from engine.errors import TransientError

from tests.fakes import FakeTime

pytestmark = pytest.mark.unit




class Flaky:
    """Fails with ``error`` the first ``failures`` times, then returns ``"ok"``."""

    def __init__(self, failures: int, error: BaseException = TransientError("flaky")) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> str:
        self.calls += 1
        self.last_args = (args, kwargs)
        if self.calls <= self.failures:
            raise self.error
        return "ok"


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("fixed", [0.1, 0.1, 0.1, 0.1, 0.1]),
        ("incremental", [0.1, 0.2, 0.3, 0.4, 0.5]),
        ("exponential", [0.1, 0.2, 0.4, 0.8, 1.0]),  # capped at max_delay_s
    ],
)
def test_delays_without_jitter(backoff: str, expected: list[float]) -> None:
    policy = RetryPolicy(backoff=backoff, base_delay_s=0.1, max_delay_s=1.0, jitter=0.0)
    assert [policy.delay_s(n) for n in range(1, 6)] == pytest.approx(expected)


@pytest.mark.parametrize("backoff", ["fixed", "incremental", "exponential"])
def test_jittered_delays_are_seeded_and_within_equal_jitter_band(backoff: str) -> None:
    policy = RetryPolicy(backoff=backoff, base_delay_s=0.1, max_delay_s=1.0, jitter=0.5)
    first = [policy.delay_s(n, random.Random(7)) for n in range(1, 6)]
    again = [policy.delay_s(n, random.Random(7)) for n in range(1, 6)]
    assert first == again
    for n, delay in enumerate(first, start=1):
        full = policy.base_delay_for(n)
        assert full * 0.5 <= delay <= full
    # The jitter actually varies the delay between draws.
    rng = random.Random(1)
    assert len({policy.delay_s(3, rng) for _ in range(20)}) > 1


def test_exponential_delay_of_huge_attempt_is_capped_not_overflowing() -> None:
    policy = RetryPolicy(base_delay_s=0.05, max_delay_s=2.0, jitter=0.0)
    assert policy.delay_s(100_000) == 2.0


def test_retries_transient_failures_until_success_with_the_policy_delays() -> None:
    fake = FakeTime()
    flaky = Flaky(failures=2)
    policy = RetryPolicy(max_attempts=3, backoff="exponential", base_delay_s=0.1, jitter=0.0)
    result = policy.call(flaky, 1, key="v", sleep=fake.sleep, clock=fake.clock)
    assert result == "ok"
    assert flaky.calls == 3
    assert flaky.last_args == ((1,), {"key": "v"})
    assert fake.sleeps == pytest.approx([0.1, 0.2])


def test_attempt_limit_raises_the_last_transient_error() -> None:
    fake = FakeTime()
    error = TransientError("still down")
    flaky = Flaky(failures=10, error=error)
    policy = RetryPolicy(max_attempts=4, backoff="fixed", base_delay_s=0.5, jitter=0.0)
    with pytest.raises(TransientError, match="still down") as info:
        policy.call(flaky, sleep=fake.sleep, clock=fake.clock)
    assert info.value is error
    assert info.value.retry_attempts == 4
    assert flaky.calls == 4
    assert fake.sleeps == [0.5, 0.5, 0.5]


def test_time_box_stops_before_a_sleep_that_would_pass_it() -> None:
    fake = FakeTime()
    flaky = Flaky(failures=100)
    # Delays 1, 2, 4, 8: after the 3rd failure elapsed is 3s, and 3 + 4 > 5.
    policy = RetryPolicy(max_attempts=50, base_delay_s=1.0, max_delay_s=100.0, jitter=0.0, time_box_s=5.0)
    with pytest.raises(TransientError) as info:
        policy.call(flaky, sleep=fake.sleep, clock=fake.clock)
    assert flaky.calls == 3
    assert fake.sleeps == [1.0, 2.0]
    assert fake.now <= 5.0
    assert any("time box" in note for note in info.value.__notes__)


def test_time_box_counts_the_time_spent_in_the_calls_too() -> None:
    fake = FakeTime()

    def slow_failure() -> None:
        fake.now += 4.0  # each attempt itself takes 4s
        raise TransientError("slow")

    policy = RetryPolicy(max_attempts=10, backoff="fixed", base_delay_s=0.5, jitter=0.0, time_box_s=9.0)
    with pytest.raises(TransientError):
        policy.call(slow_failure, sleep=fake.sleep, clock=fake.clock)
    # attempt 1 ends at 4.0, sleep to 4.5, attempt 2 ends at 8.5; 8.5 + 0.5 = 9.0 fits,
    # attempt 3 ends at 13.0 and the next sleep would pass 9s.
    assert fake.sleeps == [0.5, 0.5]


def test_non_transient_errors_are_raised_at_once_never_retried() -> None:
    fake = FakeTime()
    flaky = Flaky(failures=1, error=ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        RetryPolicy(max_attempts=5).call(flaky, sleep=fake.sleep, clock=fake.clock)
    assert flaky.calls == 1
    assert fake.sleeps == []


def test_retry_on_names_extra_transient_types() -> None:
    fake = FakeTime()
    flaky = Flaky(failures=2, error=ConnectionResetError("reset"))
    policy = RetryPolicy(max_attempts=3, jitter=0.0, retry_on=(ConnectionError, TransientError))
    assert policy.call(flaky, sleep=fake.sleep, clock=fake.clock) == "ok"
    assert is_transient(ConnectionResetError(), (ConnectionError,))
    assert not is_transient(ValueError())
    assert is_transient(type("Sub", (TransientError,), {})())
    assert not is_transient(KeyboardInterrupt(), (BaseException,))


def test_single_attempt_policy_never_sleeps() -> None:
    fake = FakeTime()
    with pytest.raises(TransientError):
        RetryPolicy(max_attempts=1).call(Flaky(failures=1), sleep=fake.sleep, clock=fake.clock)
    assert fake.sleeps == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"backoff": "linear"}, "backoff"),
        ({"jitter": 1.5}, "jitter"),
        ({"base_delay_s": -1}, "base_delay_s"),
        ({"time_box_s": float("nan")}, "time_box_s"),
        ({"retry_on": ("ValueError",)}, "retry_on"),
    ],
)
def test_invalid_policies_are_rejected_with_a_clear_message(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        RetryPolicy(**kwargs)


def test_a_single_exception_class_is_accepted_as_retry_on() -> None:
    assert RetryPolicy(retry_on=OSError).retry_on == (OSError,)


@settings(max_examples=25)
@given(
    backoff=st.sampled_from(["fixed", "incremental", "exponential"]),
    base=st.floats(0, 10),
    cap=st.floats(0, 10),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 200),
    seed=st.integers(0, 2**32),
)
def test_delay_is_always_within_jitter_band_and_cap(
    backoff: str, base: float, cap: float, jitter: float, attempt: int, seed: int
) -> None:
    policy = RetryPolicy(backoff=backoff, base_delay_s=base, max_delay_s=cap, jitter=jitter)
    full = policy.base_delay_for(attempt)
    delay = policy.delay_s(attempt, random.Random(seed))
    assert full <= cap
    assert full * (1 - jitter) - 1e-12 <= delay <= full + 1e-12


def test_wrap_makes_a_retrying_function() -> None:
    flaky = Flaky(failures=1)
    policy = RetryPolicy(max_attempts=2, base_delay_s=0.0, jitter=0.0)
    assert policy.wrap(flaky)("arg") == "ok"
    assert flaky.calls == 2


@settings(max_examples=25)
@given(
    failures=st.integers(0, 12),
    max_attempts=st.integers(1, 8),
    time_box=st.none() | st.floats(0, 3),
    backoff=st.sampled_from(["fixed", "incremental", "exponential"]),
    seed=st.integers(0, 1000),
)
def test_calls_sleeps_and_outcome_follow_the_policy(
    failures: int, max_attempts: int, time_box: float | None, backoff: str, seed: int
) -> None:
    fake = FakeTime()
    flaky = Flaky(failures=failures)
    policy = RetryPolicy(max_attempts=max_attempts, backoff=backoff, base_delay_s=0.1, time_box_s=time_box)
    try:
        outcome = policy.call(flaky, sleep=fake.sleep, clock=fake.clock, rng=random.Random(seed))
    except TransientError:
        outcome = "gave up"
    assert flaky.calls <= max_attempts
    assert len(fake.sleeps) == flaky.calls - 1
    if time_box is not None:
        assert fake.now <= time_box + 1e-9
    if outcome == "ok":
        assert flaky.calls == failures + 1
    else:
        assert flaky.calls <= failures
        if time_box is None:
            assert flaky.calls == max_attempts
