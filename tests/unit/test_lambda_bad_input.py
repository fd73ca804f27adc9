"""Bad input to the generic Lambda engine: event ids of any length and bytes, values that
do not cast, event times outside the plausibility window, a batch layer that keeps
failing.  Each case checks its one-line message and that the good rows of the same batch
are kept exactly (against plain-Python oracles)."""

from __future__ import annotations

import contextlib
import threading
import tracemalloc
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.common.retry import RetryPolicy
from engine.errors import SpecError
from engine.lambda_arch import BatchLayerError, EventContract, EventTimeWindow, LambdaOptions
from engine.lambda_arch import dedup
from engine.lambda_arch.dedup import DedupIndex, EventIds
from engine.lambda_arch.log import MasterLog
from engine.lambda_arch.schedule import BatchSchedule

pytestmark = pytest.mark.unit

NOW_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z, the frozen wall clock of these tests
HOUR = 3_600_000


# -- de-duplication: exact, linear in bytes --------------------------------------------

def _oracle_duplicates(batches: list[list[tuple[Any, int]]], horizon: int) -> list[list[bool]]:
    """The dedup rule of ``dedup.py`` in plain Python: id -> newest stored time."""
    newest: dict[Any, int] = {}
    watermark = None
    masks = []
    for batch in batches:
        cutoff = None if watermark is None else watermark - horizon
        mask = []
        for event_id, time in batch:
            seen = newest.get(event_id) if event_id is not None else None
            duplicate = seen is not None and (cutoff is None or seen >= cutoff)
            mask.append(duplicate)
            if not duplicate:
                if event_id is not None:
                    newest[event_id] = time if seen is None else max(seen, time)
                watermark = time if watermark is None else max(watermark, time)
        masks.append(mask)
    return masks


_ids = st.one_of(st.none(), st.sampled_from(["a", "b", "", "a\x00", "é" * 3]), st.text(max_size=20),
                 st.text(min_size=40, max_size=200), st.binary(max_size=30).map(lambda raw: raw.hex()))
_batches = st.lists(st.lists(st.tuples(_ids, st.integers(0, 300)), max_size=25), max_size=8)


@settings(max_examples=120, deadline=None)
@given(batches=_batches, horizon=st.integers(0, 200), slice_bytes=st.sampled_from([16, 64, 1 << 18]),
       collide=st.booleans(), binary=st.booleans())
def test_dedup_equals_a_set_based_oracle_for_ids_of_any_length_and_bytes(
        batches: list[list[tuple[Any, int]]], horizon: int, slice_bytes: int, collide: bool, binary: bool) -> None:
    """Small slices make most ids go through the long-id path; ``collide`` gives every
    id the same hash, so every answer rests on the exact comparison."""
    index = DedupIndex(horizon)
    with contextlib.ExitStack() as patches:
        patches.enter_context(mock.patch.object(dedup, "SLICE_BYTES", slice_bytes))
        if collide:
            patches.enter_context(mock.patch.object(dedup, "hash_ids",
                                                    lambda values: np.zeros(len(values), np.uint64)))
        for batch, expected in zip(batches, _oracle_duplicates(batches, horizon)):
            values = [None if i is None else i.encode() if binary else i for i, _ in batch]
            ids = EventIds.of(pa.array(values, pa.binary() if binary else pa.string()))
            times = np.array([t for _, t in batch], dtype=np.int64)
            mask = index.duplicates(ids, times)
            assert mask.tolist() == expected
            index.add(ids.take(~mask), times[~mask])


def test_one_huge_event_id_costs_memory_linear_in_its_bytes_not_rows_times_length() -> None:
    size = 32 << 20  # a zero-padded rows x longest-id matrix would need 2,000 x 32 MiB
    ids = pa.array([f"e{i}" for i in range(1_999)] + ["x" * size])
    resent = pa.array(["e5", "x" * size, "x" * (size - 1) + "y", "new"])
    index = DedupIndex(10 * HOUR)
    times = np.full(2_000, NOW_MS, dtype=np.int64)
    tracemalloc.start()  # numpy's allocations are traced (Arrow's are not)
    try:
        first = EventIds.of(ids)
        assert not index.duplicates(first, times).any()
        index.add(first, times)
        _, held = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        again = EventIds.of(resent)
        assert index.duplicates(again, times[:4]).tolist() == [True, True, False, False]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The index keeps one copy of each id's bytes, with room to grow: a few times the
    # bytes, not rows x longest id (2,000 x 32 MiB).
    assert held < 5 * size
    # Hashing and looking up a batch need scratch bounded by the slice size (256 KiB),
    # whatever the id length.
    assert peak - held < size // 2


# -- values that do not cast, row by row ----------------------------------------------

_LINES = EventContract(pa.schema([pa.field("line", pa.string(), nullable=False), pa.field("tag", pa.int64())]))
_TAGS = ["1", "-2", "0", "seven", "", "3.5", "9223372036854775808", "1e3", None, "42"]


def _castable(text: str | None) -> bool:
    if text is None:
        return True
    body = text[1:] if text.startswith("-") else text
    return body.isdigit() and -2**63 <= int(text) < 2**63


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from(_TAGS)), min_size=1, max_size=30))
def test_an_uncastable_value_rejects_its_row_only(tmp_path_factory: pytest.TempPathFactory,
                                                 rows: list[tuple[str | None, str | None]]) -> None:
    with MasterLog(tmp_path_factory.mktemp("cast"), _LINES) as log:
        ack, stored = log.ingest(pa.table({"line": [r[0] for r in rows], "tag": [r[1] for r in rows]}))
        rejected = log.rejected_rows()
    good = [(line, None if tag is None else int(tag)) for line, tag in rows if _castable(tag) and line is not None]
    bad = [(line, tag) for line, tag in rows if line is None or not _castable(tag)]
    assert list(zip(stored.column("line").to_pylist(), stored.column("tag").to_pylist())) == good
    assert (ack.accepted, ack.rejected) == (len(good), len(bad))
    if bad:  # the first failing field wins; the rejected rows keep the values as given
        assert rejected.column("reject_reason").to_pylist() == [
            "missing line" if line is None else "invalid tag (not int64)" for line, _ in bad]
        assert rejected.column("tag").to_pylist() == [tag for _, tag in bad]


# -- event times outside the plausibility window --------------------------------------

_TIMED = EventContract(pa.schema([pa.field("id", pa.string()), pa.field("t", pa.int64())]), id_column="id",
                       time_column="t")


def _timed(pairs: list[tuple[str, int | None]]) -> pa.Table:
    return pa.table({"id": [p[0] for p in pairs], "t": pa.array([p[1] for p in pairs], pa.int64())})


def test_implausible_event_times_are_rejected_and_move_neither_the_watermark_nor_the_horizon(tmp_path: Path) -> None:
    with MasterLog(tmp_path, _TIMED, dedup_horizon_ms=2 * HOUR, clock=lambda: NOW_MS / 1000) as log:
        ack, _ = log.ingest(_timed([("a", NOW_MS - HOUR), ("b", NOW_MS), ("late", NOW_MS - 2 * HOUR)]))
        assert (ack.accepted, ack.rejected) == (3, 0)
        year_3000 = 32_503_680_000_000
        ack, stored = log.ingest(_timed([("future", year_3000), ("seconds", NOW_MS // 1000), ("ok", NOW_MS + HOUR),
                                         ("micros", NOW_MS * 1000), ("old", NOW_MS - 400 * 24 * HOUR),
                                         ("none", None), ("a", NOW_MS)]))
        assert stored.column("id").to_pylist() == ["ok"] and (ack.accepted, ack.duplicates, ack.rejected) == (1, 1, 5)
        assert log.max_event_time_ms == NOW_MS + HOUR  # not the year 3000
        rejected = log.rejected_rows()
        assert dict(zip(rejected.column("id").to_pylist(), rejected.column("reject_reason").to_pylist())) == {
            "future": "event_time more than 24 h ahead of the clock",
            "seconds": "event_time before 2000-01-01T00:00:00Z",
            "micros": "event_time more than 24 h ahead of the clock",
            "old": "event_time more than 8760 h behind the newest event",
            "none": "missing t"}
        assert log.ingest(_timed([("b", NOW_MS)]))[0].duplicates == 1  # the horizon did not jump either
    with MasterLog(tmp_path / "off", _TIMED, time_window=None) as log:
        assert log.ingest(_timed([("future", year_3000)]))[0].accepted == 1


def test_the_window_is_configurable_with_clear_errors() -> None:
    assert LambdaOptions().event_time_window == EventTimeWindow()
    assert LambdaOptions(event_time_window=None).event_time_window is None
    with pytest.raises(SpecError, match=r"^EventTimeWindow.max_ahead_hours must be None or a finite number of "
                                        r"hours >= 0, got -1$"):
        EventTimeWindow(max_ahead_hours=-1)
    with pytest.raises(SpecError, match=r"^EventTimeWindow.earliest must be an ISO-8601 time, got 'soon'$"):
        EventTimeWindow(earliest="soon")
    with pytest.raises(SpecError, match=r"^LambdaOptions.event_time_window must be an EventTimeWindow or None, "
                                        r"got int$"):
        LambdaOptions(event_time_window=3)
    with pytest.raises(SpecError, match=r"^LambdaOptions.dedup_horizon_hours must be finite and >= 0, got inf$"):
        LambdaOptions(dedup_horizon_hours=float("inf"))


# -- the batch schedule: retried, then reported ----------------------------------------

def _quick(attempts: int) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, backoff="fixed", base_delay_s=0.0, jitter=0.0, retry_on=(Exception,))


def test_a_failed_recomputation_is_retried_and_the_schedule_goes_on() -> None:
    calls: list[int] = []
    succeeded = threading.Event()

    def recompute() -> None:
        calls.append(1)
        if len(calls) <= 2:
            raise OSError("disk full")
        succeeded.set()

    failures: list[BatchLayerError] = []
    schedule = BatchSchedule(recompute, 0.001, _quick(3), failures.append)
    schedule.start()
    assert succeeded.wait(60)
    schedule.stop()
    assert not schedule.running() and schedule.error is None and failures == []
    assert schedule.failed_attempts == 2 and schedule.last_failure == "OSError: disk full" and schedule.runs >= 1


def test_a_recomputation_that_keeps_failing_stops_the_schedule_with_a_one_line_error() -> None:
    def recompute() -> None:
        raise OSError("disk full")

    failures: list[BatchLayerError] = []
    schedule = BatchSchedule(recompute, 0.001, _quick(2), failures.append)
    schedule.start()
    assert schedule.join(60)
    assert not schedule.running() and failures == [schedule.error]
    assert str(schedule.error) == ("the batch layer stopped: recomputing the batch views failed 2 time(s), "
                                   "last with OSError: disk full")
    assert isinstance(schedule.error.__cause__, OSError)


def test_stopping_the_schedule_ends_a_long_backoff_at_once_and_bad_intervals_are_refused() -> None:
    started = threading.Event()

    def recompute() -> None:
        started.set()
        raise OSError("disk full")

    slow = RetryPolicy(max_attempts=5, backoff="fixed", base_delay_s=3_600.0, max_delay_s=3_600.0, jitter=0.0,
                       retry_on=(Exception,))
    failures: list[BatchLayerError] = []
    schedule = BatchSchedule(recompute, 0.001, slow, failures.append)
    schedule.start()
    assert started.wait(60)
    schedule.stop()  # would wait an hour if the backoff did not listen to stop
    assert not schedule.running() and failures == [] and schedule.failed_attempts == 1
    for bad in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match=r"^batch schedule interval must be a number of seconds in "
                                             r"\(0, 604800\], got "):
            BatchSchedule(recompute, bad, slow, failures.append)
