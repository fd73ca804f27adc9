"""Unit tests of the status page's registry and trackers: what engine.run registers, weak
references, forgetting finished handles, faulty handles, results, and the served data."""

from __future__ import annotations

import gc
import http.client
import json
import threading
import time
import weakref
from collections import Counter
from typing import Any

import pyarrow as pa
import pytest

import engine
from engine.errors import ResultTimeoutError
from engine.runtime.handle import Handle
from engine.ui import registry as ui_registry
from engine.ui.page import HTML
from engine.ui.registry import Registry, activate, deactivate, register
from engine.ui.server import StatusServer
from engine.ui.tracker import HISTORY_POINTS

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Simple(Handle):
    """A handle in a given state whose result() times out ``timeouts`` times first."""

    def __init__(self, state: str = "running", result: Any = None, error: BaseException | None = None,
                 timeouts: int = 0) -> None:
        self.state, self.final, self.error, self.timeouts, self.result_calls = state, result, error, timeouts, 0

    def status(self) -> dict:
        return {"state": self.state}

    def metrics(self) -> dict:
        return {}

    def progress(self) -> float | None:
        return None

    def result(self, timeout_s: float | None = None) -> Any:
        self.result_calls += 1
        if self.result_calls <= self.timeouts:
            raise ResultTimeoutError("later")
        if self.error is not None:
            raise self.error
        return self.final

    def cancel(self) -> None:
        pass


class Broken(Simple):
    def status(self) -> dict:
        raise RuntimeError("master unreachable\nsecond line")

    def metrics(self) -> dict:
        raise KeyError("x")


@pytest.fixture
def active() -> Any:
    registry = Registry(clock=Clock())
    activate(registry)
    try:
        yield registry
    finally:
        deactivate(registry)


def test_register_without_a_status_page_keeps_nothing() -> None:
    assert ui_registry.active_registry() is None
    handle = Simple()
    reference = weakref.ref(handle)
    register(handle, None, "inline")
    del handle
    gc.collect()
    assert reference() is None


def test_engine_run_registers_every_handle(active: Registry, tmp_path: Any) -> None:
    job = engine.MapReduceJob(name="registered", source=engine.TableSource(pa.table({"k": ["a", "b", "a"]})),
                              map=lambda t: t, reduce=engine.GroupByAggregate("k", {}), keys="k", reducers=1,
                              output=str(tmp_path / "out"))
    handle = engine.run(job, "inline")
    handle.result(timeout_s=60)
    (tracker,) = active.trackers()
    assert (tracker.kind, tracker.name, tracker.executor) == ("mapreduce", "registered", "inline")
    tracker.sample()
    assert tracker.state == "succeeded" and tracker.result["map_tasks"] == 1 and not tracker.active


def test_the_tracker_holds_its_handle_weakly_and_keeps_its_last_state(active: Registry) -> None:
    handle = Simple("running")
    tracker = active.add(handle, kind="other", name="dropped")
    tracker.sample()
    del handle
    gc.collect()
    tracker.sample()
    assert tracker.released and not tracker.active and tracker.state == "running"
    document = active.document()["handles"][0]
    assert document["released"] is True and document["state"] == "running"


def test_finished_handles_stay_a_while_then_are_forgotten() -> None:
    clock = Clock()
    registry = Registry(keep_finished_s=60, max_finished=2, clock=clock)
    handles = [Simple("succeeded", result={"ok": i}) for i in range(3)]
    running = Simple("running")
    for handle in handles:
        registry.add(handle, kind="other", name="done")
    registry.add(running, kind="other", name="running")
    registry.sample_all()
    assert [t.name for t in registry.trackers()] == ["running", "done", "done"]  # newest finished two kept
    clock.now += 61
    registry.sample_all()
    assert [t.name for t in registry.trackers()] == ["running"]
    assert [h["name"] for h in registry.document()["handles"]] == ["running"]


def test_running_handles_are_listed_before_finished_ones(active: Registry) -> None:
    older, newer = Simple("running"), Simple("failed", error=ValueError("bad"))
    active.add(older, kind="other", name="older")
    active.add(newer, kind="other", name="newer")
    active.sample_all()
    assert [h["name"] for h in active.document()["handles"]] == ["older", "newer"]


def test_a_handle_whose_methods_raise_is_shown_with_the_problem(active: Registry) -> None:
    handle = Broken()
    tracker = active.add(handle, kind="mapreduce", name="broken")
    active.sample_all()
    active.sample_all()
    texts = [text for _, text in tracker.events]
    assert texts.count("status() failed: RuntimeError: master unreachable") == 1
    assert texts.count("metrics() failed: KeyError: 'x'") == 1
    assert tracker.state == "unknown" and tracker.active


def test_the_result_is_asked_for_until_it_stops_timing_out(active: Registry) -> None:
    handle = Simple("succeeded", result={"requests": 3}, timeouts=2)
    tracker = active.add(handle, kind="scatter_gather", name="svc")
    for _ in range(5):
        tracker.sample()
    assert handle.result_calls == 3 and tracker.result == {"metrics": {"requests": 3}} and not tracker.active


def test_a_failed_result_shows_its_error_in_one_line(active: Registry) -> None:
    handle = Simple("failed", error=RuntimeError("job failed: map-00003 kept failing\nTraceback ..."))
    tracker = active.add(handle, kind="mapreduce", name="failing")
    tracker.sample()
    assert active.document()["handles"][0]["error"] == "RuntimeError: job failed: map-00003 kept failing"
    assert not tracker.active


def test_history_is_bounded(active: Registry) -> None:
    class Counting(Simple):
        calls = 0

        def progress(self) -> float:
            Counting.calls += 1
            return min(1.0, Counting.calls / 1000)

    handle = Counting()  # the tracker holds it weakly: keep it alive here
    tracker = active.add(handle, kind="other", name="long")
    for _ in range(HISTORY_POINTS + 25):
        tracker.sample()
    assert len(tracker.history) == HISTORY_POINTS
    assert tracker.history[-1][1]["progress"] == round(100 * (HISTORY_POINTS + 25) / 1000, 2)


def test_untrusted_names_and_errors_never_reach_the_html_and_are_escaped_in_json() -> None:
    evil_name = "<script>alert('name')</script>"
    evil_error = '<img src=x onerror="alert(1)"> & more'
    server = StatusServer(Registry(), token="t" * 40, interval_s=0.05).start()
    handle = Simple("failed", error=ValueError(evil_error))
    try:
        server.registry.add(handle, kind="pipeline", name=evil_name)
        server.registry.sample_all()  # wait for the sample; refresh() then only rebuilds the document
        server.refresh()
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/?token=" + "t" * 40)
        page = connection.getresponse().read().decode()
        connection.request("GET", "/api/status?token=" + "t" * 40)
        raw = connection.getresponse().read()
        connection.close()
    finally:
        server.stop()
    assert page == HTML and "alert" not in page
    assert b"<" not in raw and b">" not in raw
    (shown,) = json.loads(raw)["handles"]
    assert shown["name"] == evil_name and shown["error"] == f"ValueError: {evil_error}"


def test_counters_of_a_running_handle_are_shown(active: Registry) -> None:
    class WithCounters(Simple):
        def counters(self) -> Counter:
            return Counter(lines=4)

    handle = WithCounters()
    tracker = active.add(handle, kind="other", name="c")
    tracker.sample()
    assert tracker.last.counters == {"lines": 4}


def test_a_slow_handle_holds_up_neither_the_others_nor_itself_twice(active: Registry) -> None:
    release = threading.Event()

    class Slow(Simple):
        calls = 0

        def status(self) -> dict:
            Slow.calls += 1
            release.wait(60)
            return {"state": "running"}

    slow, fast = Slow(), Simple("running")
    slow_tracker = active.add(slow, kind="other", name="slow")
    fast_tracker = active.add(fast, kind="other", name="fast")
    try:
        active.sample_all(timeout_s=0)
        deadline = time.monotonic() + 60
        while fast_tracker.last is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fast_tracker.state == "running" and slow_tracker.last is None
        assert [h["name"] for h in active.document()["handles"]] == ["fast", "slow"]  # rendering is not blocked
        active.sample_all(timeout_s=0)
        assert Slow.calls == 1  # still answering the first sample: not asked again
    finally:
        release.set()
    active.sample_all()
    assert slow_tracker.state == "running" and Slow.calls in (1, 2)  # joined the first, or sampled again
