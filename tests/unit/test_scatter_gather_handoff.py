"""Unit tests of the shard host's hand-off threads and latch (no Ray)."""

from __future__ import annotations

import threading
import time

import pytest

from engine.scatter_gather.handoff import HandOffThreads, Latch

pytestmark = pytest.mark.unit


def test_a_latch_times_out_closed_then_lets_every_wait_through_once_open() -> None:
    latch = Latch()
    started = time.monotonic()
    assert latch.wait(0.05) is False
    assert time.monotonic() - started >= 0.04
    threading.Timer(0.02, latch.open).start()
    assert latch.wait(5.0) is True
    latch.open()  # a second open changes nothing
    assert latch.wait(0) and latch.wait(None) and latch.is_open()


def test_every_handed_off_call_runs_on_another_thread_and_threads_are_reused() -> None:
    threads = HandOffThreads(3, "test")
    seen: list[int] = []
    lock = threading.Lock()
    for _ in range(50):
        done = Latch()

        def call(done: Latch = done) -> None:
            with lock:
                seen.append(threading.get_ident())
            done.open()
        threads.run(call)
        assert done.wait(5.0)
    assert len(seen) == 50 and threading.get_ident() not in seen
    assert len(set(seen)) == 1  # one call at a time: the same parked thread each time
    threads.close()


def test_at_most_limit_calls_run_at_once_and_a_busy_pool_says_so() -> None:
    threads = HandOffThreads(2, "test")
    release = Latch()
    running = [Latch(), Latch()]
    for latch in running:
        threads.run(lambda latch=latch: (latch.open(), release.wait(5.0)))
    assert all(latch.wait(5.0) for latch in running)
    with pytest.raises(RuntimeError, match="all 2 threads are busy"):
        threads.run(lambda: None)
    release.open()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # both threads park again
        try:
            threads.run(lambda: None)
            break
        except RuntimeError:
            time.sleep(0.01)
    else:
        pytest.fail("no thread came back after its call returned")
    threads.close()
    with pytest.raises(RuntimeError, match="closed"):
        threads.run(lambda: None)


def test_a_call_that_raises_frees_its_place_for_a_new_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    threads = HandOffThreads(1, "test")
    threads.run(lambda: 1 / 0)
    done = Latch()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            threads.run(done.open)
            break
        except RuntimeError:
            time.sleep(0.01)
    assert done.wait(5.0)
    threads.close()
