"""Unit tests of the circuit breaker's state machine and timings, with an injected clock."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.circuit_breaker import CircuitBreaker, CircuitBreakerRegistry

from engine.errors import CircuitOpenError

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failing() -> None:
    raise ConnectionError("downstream down")


def test_full_state_machine_without_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("db", failure_threshold=3, reset_timeout_s=10.0, clock=clock)
    assert breaker.state == "closed"

    # closed -> open after `threshold` consecutive failures
    for expected_failures in (1, 2):
        with pytest.raises(ConnectionError):
            breaker.call(failing)
        assert breaker.state == "closed"
        assert breaker.consecutive_failures == expected_failures
    with pytest.raises(ConnectionError):
        breaker.call(failing)
    assert breaker.state == "open"
    assert breaker.times_opened == 1

    # open rejects without calling, and says when to come back
    calls = []
    clock.now += 4.0
    with pytest.raises(CircuitOpenError, match="'db' is open") as info:
        breaker.call(calls.append, 1)
    assert calls == []
    assert info.value.retry_after_s == pytest.approx(6.0)
    assert info.value.breaker == "db"
    assert not breaker.allow_request()

    # half-open after the timeout; one trial call at a time
    clock.now += 6.0
    assert breaker.state == "half_open"
    assert breaker.allow_request()
    assert not breaker.allow_request()  # the single trial slot is taken
    breaker.record_success()  # success closes
    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 0
    assert breaker.call(lambda: 42) == 42


def test_failure_in_half_open_reopens_and_restarts_the_timeout() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("api", failure_threshold=1, reset_timeout_s=5.0, clock=clock)
    with pytest.raises(ConnectionError):
        breaker.call(failing)
    clock.now += 5.0
    assert breaker.state == "half_open"
    with pytest.raises(ConnectionError):
        breaker.call(failing)
    assert breaker.state == "open"
    assert breaker.times_opened == 2
    clock.now += 4.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.call(lambda: "up") == "up"
    assert breaker.state == "closed"


def test_success_in_closed_state_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker("x", failure_threshold=2, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open"


def test_failing_probe_keeps_it_open_and_is_asked_again_after_another_timeout() -> None:
    clock = FakeClock()
    healthy = [False]
    probes: list[float] = []

    def probe() -> bool:
        probes.append(clock.now)
        return healthy[0]

    breaker = CircuitBreaker("svc", failure_threshold=1, reset_timeout_s=10.0, health_probe=probe, clock=clock)
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 9.0
    assert breaker.state == "open"
    assert probes == []  # not asked before the timeout

    clock.now += 1.0
    assert breaker.state == "open"  # probe said unhealthy
    assert probes == [110.0]
    assert not breaker.allow_request()
    assert probes == [110.0]  # not re-probed until another timeout has passed

    clock.now += 10.0
    healthy[0] = True
    assert breaker.allow_request()  # probe healthy -> half-open, trial admitted
    assert breaker.state == "half_open"
    assert probes == [110.0, 120.0]
    breaker.record_success()
    assert breaker.state == "closed"


def test_probe_that_raises_counts_as_unhealthy() -> None:
    clock = FakeClock()

    def probe() -> bool:
        raise OSError("probe cannot connect")

    breaker = CircuitBreaker("svc", failure_threshold=1, reset_timeout_s=1.0, health_probe=probe, clock=clock)
    breaker.record_failure()
    clock.now += 1.0
    assert breaker.state == "open"


def test_half_open_admits_up_to_max_calls_trials() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("q", failure_threshold=1, reset_timeout_s=1.0, half_open_max_calls=2, clock=clock)
    breaker.record_failure()
    clock.now += 1.0
    assert [breaker.allow_request() for _ in range(3)] == [True, True, False]
    assert breaker.rejected_calls == 1


def test_errors_outside_failure_on_do_not_count_and_free_the_trial_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("p", failure_threshold=1, reset_timeout_s=1.0, clock=clock, failure_on=(ConnectionError,))

    def bad_request() -> None:
        raise ValueError("caller's fault")

    with pytest.raises(ValueError):
        breaker.call(bad_request)
    assert breaker.state == "closed"
    breaker.record_failure()
    clock.now += 1.0
    with pytest.raises(ValueError):
        breaker.call(bad_request)
    assert breaker.state == "half_open"
    assert breaker.allow_request()  # the slot was released


def test_reset_and_pickling() -> None:
    breaker = CircuitBreaker("r", failure_threshold=1, clock=FakeClock())
    breaker.record_failure()
    assert breaker.state == "open"
    copy = pickle.loads(pickle.dumps(breaker))
    assert copy.state == "open"
    breaker.reset()
    assert breaker.state == "closed"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"reset_timeout_s": -1}, "reset_timeout_s"),
        ({"half_open_max_calls": 0}, "half_open_max_calls"),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        CircuitBreaker("bad", **kwargs)


def test_registry_keeps_one_breaker_per_downstream_with_shared_defaults() -> None:
    clock = FakeClock()
    registry = CircuitBreakerRegistry(failure_threshold=2, reset_timeout_s=3.0, clock=clock)
    a = registry.get("a")
    assert registry.get("a") is a
    b = registry.get("b", health_probe=lambda: True)
    assert b is not a and b.failure_threshold == 2 and b.reset_timeout_s == 3.0
    a.record_failure()
    a.record_failure()
    assert registry.states() == {"a": "open", "b": "closed"}
    assert "a" in registry and len(registry) == 2
    assert {br.name for br in registry} == {"a", "b"}
    clock.now += 3.0
    assert registry.states()["a"] == "half_open"


@settings(max_examples=25)
@given(
    events=st.lists(
        st.one_of(st.just("ok"), st.just("fail"), st.floats(0, 4)),  # a float advances the clock
        max_size=60,
    ),
    threshold=st.integers(1, 4),
)
def test_breaker_matches_a_reference_model(events: list, threshold: int) -> None:
    """Against a plain model: an open breaker refuses every call until the timeout passes."""
    clock = FakeClock()
    timeout = 3.0
    breaker = CircuitBreaker("m", failure_threshold=threshold, reset_timeout_s=timeout, clock=clock)
    state, failures, opened_at = "closed", 0, 0.0
    for event in events:
        if isinstance(event, float):
            clock.now += event
            continue
        if state == "open" and clock.now - opened_at >= timeout:
            state = "half_open"
        allowed = state != "open"
        assert breaker.allow_request() == allowed
        if not allowed:
            continue
        if event == "ok":
            breaker.record_success()
            state, failures = "closed", 0
        else:
            breaker.record_failure()
            failures += 1
            if state == "half_open" or failures >= threshold:
                state, opened_at = "open", clock.now
        assert breaker.state == state
