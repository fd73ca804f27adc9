"""Bad input to the ad-tech application: values that do not cast, non-finite money, ISO
times of every shape in one batch, implausible event times, a producer or a batch layer
that dies during the demo.  Each case checks its one-line message and that the good rows
of the same batch are kept exactly (plain-Python oracles: ``jobs.adtech.oracle``)."""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.retry import RetryPolicy
from engine.lambda_arch import BatchLayerError, LambdaOptions
from engine.lambda_arch import deployment as deployment_module
from engine.lambda_arch.deployment import LambdaDeployment
from jobs.adtech import AdTech, demo
from jobs.adtech.events import validate_events
from jobs.adtech.oracle import iso_time_ms
from jobs.adtech.testing import BASE_MS, build_batch
from jobs.adtech.times import parse_event_times

pytestmark = pytest.mark.unit

UTC = timezone.utc


def _ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp()) * 1000


def _event(event_id: str, **changes: object) -> dict[str, object]:
    row = {"event_id": event_id, "event_time": BASE_MS, "event_type": "view", "user_id": 1, "ad_id": 2,
           "advertiser_id": 3, "cost": 0.5, "revenue": 0.0}
    row.update(changes)
    return row


def _table(rows: list[dict[str, object]], types: dict[str, pa.DataType]) -> pa.Table:
    """Rows as a table of the given column types (values of a string column as text)."""
    def value(raw: object, kind: pa.DataType) -> object:
        return str(raw) if pa.types.is_string(kind) and raw is not None and not isinstance(raw, str) else raw

    return pa.table({name: pa.array([value(row[name], kind) for row in rows], kind) for name, kind in types.items()})


# -- one bad value rejects its row, never the batch ------------------------------------

def test_uncastable_and_non_finite_values_reject_their_rows_only() -> None:
    inf, nan = float("inf"), float("nan")
    rows = [_event("ok", user_id="11"), _event("uid", user_id="x"), _event("adv", advertiser_id="3.5"),
            _event("ad", ad_id="two"), _event("cost", cost=inf), _event("rev", revenue=-inf),
            _event("nan", cost=nan), _event("ok2", user_id="12", ad_id=None, event_type="purchase")]
    types = {"event_id": pa.string(), "event_time": pa.int64(), "event_type": pa.string(), "user_id": pa.string(),
             "ad_id": pa.string(), "advertiser_id": pa.string(), "cost": pa.float64(), "revenue": pa.float64()}
    valid, rejected = validate_events(_table(rows, types))
    assert valid.column("event_id").to_pylist() == ["ok", "ok2"] and valid.column("user_id").to_pylist() == [11, 12]
    assert dict(zip(rejected.column("event_id").to_pylist(), rejected.column("reject_reason").to_pylist())) == {
        "uid": "invalid user_id (not int64)", "adv": "invalid advertiser_id (not int64)",
        "ad": "invalid ad_id (not int64)", "cost": "negative or non-finite cost",
        "rev": "negative or non-finite revenue", "nan": "negative or non-finite cost"}
    assert rejected.column("user_id").to_pylist()[0] == "x"  # the bad value is kept, as text


def test_non_integral_floats_and_invalid_utf8_ids_reject_their_rows_only() -> None:
    inf, nan = float("inf"), float("nan")
    rows = [_event(b"a", user_id=1.0), _event(b"b", user_id=inf), _event(b"c", user_id=nan), _event(b"d", user_id=1.5),
            _event(b"\xff\xfe", user_id=2.0), _event(b"e", user_id=3.0)]
    types = {"event_id": pa.binary(), "event_time": pa.int64(), "event_type": pa.string(), "user_id": pa.float64(),
             "ad_id": pa.int64(), "advertiser_id": pa.int64(), "cost": pa.float64(), "revenue": pa.float64()}
    valid, rejected = validate_events(_table(rows, types))
    assert valid.column("event_id").to_pylist() == ["a", "e"] and valid.column("user_id").to_pylist() == [1, 3]
    assert rejected.column("reject_reason").to_pylist() == ["invalid user_id (not int64)"] * 3 + [
        "invalid event_id (not string)"]
    assert rejected.column("event_id").to_pylist() == ["b", "c", "d", "\\xff\\xfe"]


def test_a_column_of_a_type_that_never_casts_is_a_one_line_batch_error() -> None:
    batch = build_batch([_event("a")]).set_column(3, "user_id", pa.array([[1]]))
    with pytest.raises(ValueError, match=r"^event batch column 'user_id' of type list<item: int64> cannot be cast "
                                         r"to int64$"):
        validate_events(batch)
    batch = build_batch([_event("a")]).set_column(1, "event_time", pa.array([True]))
    with pytest.raises(ValueError, match=r"^event batch column 'event_time' has type bool; expected a timestamp, "
                                         r"epoch milliseconds or ISO-8601 strings$"):
        validate_events(batch)


# -- ISO-8601 times, row by row --------------------------------------------------------

def test_fractional_iso_times_parse_next_to_a_bad_string_and_mixed_zones() -> None:
    texts = ["2026-03-02T10:00:00.123Z", "yesterday", "2026-03-02T10:00:00", "2026-03-02 10:00:00.5+01:00",
             "2026-02-30T00:00:00Z", None, "2026-03-02T10:00:00.123456789-0230", "2026-03-02T24:00:00Z"]
    times, unparsable = parse_event_times(pa.chunked_array([texts[:3], texts[3:]]))
    base = _ms(2026, 3, 2, 10)
    assert times.cast(pa.int64()).to_pylist() == [base + 123, None, base, base + 500 - 3_600_000, None, None,
                                                  base + 123 + 9_000_000, None]
    assert unparsable.to_pylist() == [False, True, False, False, True, False, False, True]
    rows = [_event(f"r{index}", event_time=text) for index, text in enumerate(texts)]
    valid, rejected = validate_events(_table(rows, {**{f.name: f.type for f in build_batch([]).schema},
                                                    "event_time": pa.string()}))
    assert valid.column("event_id").to_pylist() == ["r0", "r2", "r3", "r6"]
    assert rejected.column("reject_reason").to_pylist() == ["unparsable event_time", "unparsable event_time",
                                                            "missing event_time", "unparsable event_time"]


_digits = st.integers(0, 99).map(lambda n: f"{n:02d}")
_iso = st.builds(
    lambda year, month, day, sep, hour, minute, second, fraction, zone: (
        f"{year:04d}-{month}-{day}{sep}{hour}:{minute}:{second}{fraction}{zone}"),
    st.integers(0, 9999), _digits, _digits, st.sampled_from(["T", " ", "t", "_"]), _digits, _digits, _digits,
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=10).map(lambda d: "." + d), st.just(".")),
    st.sampled_from(["", "Z", "z", "+00:00", "-05:30", "+0530", "+05", "+23:59", "+24:00", "-01:60", "+1", " Z"]))


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.one_of(_iso, st.none(), st.text(max_size=30)), max_size=40))
def test_every_iso_string_parses_as_the_plain_python_grammar_says_whatever_its_neighbours(texts: list) -> None:
    times, unparsable = parse_event_times(pa.array(texts, pa.string()))
    expected = [None if text is None else iso_time_ms(text) for text in texts]
    assert times.cast(pa.int64()).to_pylist() == expected
    assert unparsable.to_pylist() == [text is not None and value is None for text, value in zip(texts, expected)]


# -- implausible event times through the deployment -------------------------------------

def test_implausible_times_are_rejected_and_do_not_move_the_default_query_time(tmp_path: Path) -> None:
    rows = [_event("a", event_time="2026-01-05T10:00:00Z"), _event("b", event_time="2026-01-05T10:30:00.250Z"),
            _event("y3000", event_time="3000-01-01T00:00:00Z"), _event("secs", event_time=BASE_MS // 1000)]
    as_text = [{**row, "event_time": row["event_time"] if isinstance(row["event_time"], str)
                else datetime.fromtimestamp(row["event_time"] / 1000, UTC).isoformat()} for row in rows]
    batch = _table(as_text, {**{f.name: f.type for f in build_batch([]).schema}, "event_time": pa.string()})
    with AdTech.start(tmp_path, "inline", LambdaOptions(shards=2)) as lam:
        ack = lam.ingest(batch)
        assert (ack.accepted, ack.rejected) == (2, 2)
        assert lam.latest_event_time_ms == BASE_MS + 10 * 3_600_000 + 30 * 60_000 + 250
        assert lam.ads_shown(hours=1).value == 2  # "now" is 10:30, not the year 3000
        rejected = lam.rejected_rows()
        assert dict(zip(rejected.column("event_id").to_pylist(), rejected.column("reject_reason").to_pylist())) == {
            "y3000": "event_time more than 24 h ahead of the clock",
            "secs": "event_time before 2000-01-01T00:00:00Z"}
        assert rejected.column("event_time").to_pylist()[0].startswith("3000-01-01")


# -- a batch layer that keeps failing ---------------------------------------------------

def _wait_for(condition: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_batch_schedule_that_gives_up_is_reported_and_raised_until_a_recomputation_succeeds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = deployment_module.compute_batch_views

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise OSError("no space left on device")

    retry = RetryPolicy(max_attempts=2, backoff="fixed", base_delay_s=0.0, jitter=0.0, retry_on=(Exception,))
    with AdTech.start(tmp_path, "inline", LambdaOptions(shards=1, batch_retry=retry)) as lam:
        lam.ingest(build_batch([_event("a"), _event("b")]))
        monkeypatch.setattr(deployment_module, "compute_batch_views", broken)
        lam.start_batch_schedule(0.001)
        _wait_for(lambda: lam.status()["state"] == "failed")
        message = ("the batch layer stopped: recomputing the batch views failed 2 time(s), last with OSError: "
                   "no space left on device")
        assert len(calls) == 2 and lam.status()["error"] == message
        assert lam.metrics()["last_batch_error"] == "OSError: no space left on device"
        for call in (lambda: lam.result(timeout_s=1), lambda: lam.ads_shown(hours=1),
                     lambda: lam.ingest(build_batch([_event("c")]))):
            with pytest.raises(BatchLayerError, match=f"^{re.escape(message)}$"):
                call()
        assert lam.end_offset == 2  # the refused ingest stored nothing
        monkeypatch.setattr(deployment_module, "compute_batch_views", real)
        assert lam.recompute_batch() == 2  # the fix: a successful recomputation clears the error
        assert lam.status()["state"] == "running" and lam.ads_shown(hours=1).value == 2


# -- the demo: a producer or a batch layer that dies ends it with one line --------------

_DEMO = ["--executor", "inline", "--events", "3000", "--batch-rows", "1000", "--shards", "1", "--top", "2"]


def test_a_directory_this_user_cannot_write_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo.os, "access", lambda path, mode: False)  # as for a non-root user on a 0500 directory
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--executor", "inline", "--dir", str(tmp_path / "data")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"error: argument --dir: {str(tmp_path)!r} is not writable (see --help)\n"


def test_the_demo_exits_1_with_one_line_when_the_producer_dies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    real = LambdaDeployment.ingest
    calls: list[int] = []

    def failing(self: LambdaDeployment, batch: pa.Table, client_id: str = "default") -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, batch, client_id)

    monkeypatch.setattr(LambdaDeployment, "ingest", failing)
    assert demo.main(_DEMO + ["--rate", "1000000", "--batch-every", "60", "--dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "error: the event producer failed: OSError: disk full\n"
    assert len(calls) == 2 and not [t for t in threading.enumerate() if t.name == "adtech-producer"]


def test_the_demo_exits_1_with_one_line_when_the_batch_layer_gives_up(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no space left on device")

    retry = RetryPolicy(max_attempts=2, backoff="fixed", base_delay_s=0.0, jitter=0.0, retry_on=(Exception,))
    monkeypatch.setattr(deployment_module, "compute_batch_views", broken)
    monkeypatch.setattr(demo, "_options", lambda args: LambdaOptions(shards=1, batch_retry=retry))
    assert demo.main(_DEMO + ["--rate", "1000", "--batch-every", "0.05", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "no space left on device" in err
    assert "Traceback" not in err
    assert not [t for t in threading.enumerate() if t.name in ("adtech-producer", "lambda-batch-schedule")]
