"""Heartbeats without waiting: the monitor's pings, answers and deadlines on a fake clock."""

from __future__ import annotations

import pytest

from engine.mapreduce.heartbeat import HeartbeatMonitor
from tests.fakes import FakeTime

pytestmark = pytest.mark.unit


def test_one_ping_outstanding_and_the_next_one_interval_after_the_answer() -> None:
    time = FakeTime()
    monitor = HeartbeatMonitor(interval_s=1.0, timeout_s=5.0, clock=time.clock)
    monitor.add("a")
    monitor.add("b")
    assert monitor.due() == ["a", "b"]
    assert monitor.due() == []  # both outstanding
    time.sleep(0.5)
    assert monitor.answered("a") is False  # was not starting
    assert monitor.due() == []  # answered 0 s ago
    time.sleep(1.0)
    assert monitor.due() == ["a"]  # b still has its first ping out


def test_an_unanswered_ping_makes_its_peer_overdue_after_the_timeout() -> None:
    time = FakeTime()
    monitor = HeartbeatMonitor(interval_s=1.0, timeout_s=5.0, clock=time.clock)
    monitor.add("a")
    monitor.due()
    time.sleep(5.0)
    assert monitor.overdue() == []
    time.sleep(0.1)
    assert monitor.overdue() == ["a"]
    monitor.remove("a")
    assert monitor.overdue() == [] and monitor.peers() == []


def test_a_starting_peer_gets_more_time_and_its_first_answer_says_ready() -> None:
    time = FakeTime()
    monitor = HeartbeatMonitor(interval_s=1.0, timeout_s=2.0, clock=time.clock, start_grace=3.0)
    monitor.add("fresh", starting=True)
    monitor.due()
    time.sleep(5.9)
    assert monitor.overdue() == []  # 3 x 2 s while starting
    assert monitor.answered("fresh") is True
    assert monitor.answered("fresh") is False
    time.sleep(1.0)
    monitor.due()
    time.sleep(2.1)
    assert monitor.overdue() == ["fresh"]  # now an ordinary peer


def test_a_probe_sends_a_ping_now_unless_one_is_outstanding() -> None:
    time = FakeTime()
    monitor = HeartbeatMonitor(interval_s=10.0, timeout_s=5.0, clock=time.clock)
    monitor.add("a")
    monitor.due()
    assert monitor.probe("a") is False  # already waiting for an answer
    monitor.answered("a")
    assert monitor.probe("a") is True and monitor.due() == []
    assert monitor.probe("unknown") is False
    assert monitor.answered("unknown") is False
