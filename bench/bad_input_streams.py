"""Bad-input cases of the streaming patterns, fed through the public API on the inline
executor: pipelines (their sinks and sources) and the ad-tech Lambda deployment
(``jobs.adtech.AdTech``: event ids, casts, event times, money, ISO strings, batch shapes).

Each Lambda case first ingests two good events, then the bad batch (one bad row among
good ones), and checks that the earlier events and the good rows of the bad batch were
kept (``Outcome.kept``) besides recording the reason the bad row was rejected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from bench.bad_input import Case, Outcome, handled, raised

WAIT_S = 60.0
BASE_MS = 1_767_571_200_000  # 2026-01-05T00:00:00Z, as in jobs.adtech.testing


# -- pipelines ------------------------------------------------------------------------

def _pipeline(table: pa.Table, sink: object, source: object = None) -> object:
    import engine

    return engine.Pipeline(source or engine.TableSource(table, 1), [engine.Stage("id", lambda b: b)], sink)


def _parts(directory: Path) -> list[int]:
    import pyarrow.parquet as pq

    return sorted(pq.read_table(directory)["x"].to_pylist())


def sink_pointed_at_a_file(directory: Path) -> Outcome:
    """``ParquetSink`` whose directory is a regular file."""
    import engine

    target = directory / "file"
    target.write_text("keep me")
    handle = engine.run(_pipeline(pa.table({"x": [1]}), engine.ParquetSink(str(target))), "inline")
    outcome = raised(lambda: handle.result(timeout_s=WAIT_S))
    return outcome.check_kept(target.read_text() == "keep me", "the file the sink was pointed at")


def sink_over_an_earlier_run(directory: Path) -> Outcome:
    """``ParquetSink`` on a directory holding the parts of an earlier run."""
    import engine

    out = directory / "out"
    engine.run(_pipeline(pa.table({"x": [1, 2, 3]}), engine.ParquetSink(str(out))), "inline").result(timeout_s=WAIT_S)
    handle = engine.run(_pipeline(pa.table({"x": [10, 20]}), engine.ParquetSink(str(out))), "inline")
    outcome = raised(lambda: handle.result(timeout_s=WAIT_S))
    return outcome.check_kept(_parts(out) == [1, 2, 3], "the earlier run's parts")


def missing_parquet_source(directory: Path) -> Outcome:
    """A pipeline reading ``ParquetSource`` of a path that does not exist."""
    import engine

    def run() -> None:
        source = engine.ParquetSource(str(directory / "nowhere"))
        engine.run(_pipeline(pa.table({"x": [1]}), engine.CollectSink(), source), "inline").result(timeout_s=WAIT_S)

    return raised(run)


def resume_without_a_durable_sink(directory: Path) -> Outcome:
    """``engine.run(pipeline, "inline", resume=True)`` with a ``CollectSink``."""
    import engine

    return raised(lambda: engine.run(_pipeline(pa.table({"x": [1]}), engine.CollectSink()), "inline", resume=True))


# -- the ad-tech Lambda deployment ------------------------------------------------------

def _event(event_id: str, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {"event_id": event_id, "event_time": BASE_MS + 3_600_000, "event_type": "view",
                              "user_id": 1, "ad_id": 2, "advertiser_id": 3, "cost": 0.5, "revenue": 0.0}
    row.update(changes)
    return row


def _events(rows: list[dict[str, object]], **types: pa.DataType) -> pa.Table:
    """Rows as an event batch; ``types`` overrides column types (values then given as text,
    epoch-millisecond times as ISO-8601 strings)."""
    from datetime import datetime, timezone

    from jobs.adtech.events import EVENT_SCHEMA

    schema = {f.name: types.get(f.name, f.type) for f in EVENT_SCHEMA}

    def value(name: str, raw: object, kind: pa.DataType) -> object:
        if not pa.types.is_string(kind) or raw is None or isinstance(raw, str):
            return raw
        if name == "event_time" and isinstance(raw, int):
            return datetime.fromtimestamp(raw / 1000, timezone.utc).isoformat(timespec="milliseconds")
        return str(raw)

    return pa.table({name: pa.array([value(name, row[name], kind) for row in rows], kind)
                     for name, kind in schema.items()})


def _with_adtech(directory: Path, use: Callable[[Any], Outcome]) -> Outcome:
    """Start an inline ad-tech deployment, ingest two good events, then ``use`` it; the
    outcome notes whether the two good events are still there afterwards."""
    from engine import LambdaOptions
    from jobs.adtech import AdTech

    with AdTech.start(directory / "lambda", "inline", LambdaOptions(shards=1)) as lam:
        lam.ingest(_events([_event("before-1"), _event("before-2", event_time=BASE_MS + 7_200_000)]))
        outcome = use(lam)
        if not outcome.kept.startswith("NO"):  # every stored event is a view within these 24 h
            shown = lam.ads_shown(as_of=BASE_MS + 3 * 3_600_000, hours=24).value
            outcome.check_kept(lam.end_offset >= 2 and shown == lam.end_offset,
                               f"acknowledged events ({shown} views answered, {lam.end_offset} stored)")
        return outcome


def huge_event_id(directory: Path) -> Outcome:
    """2,000 events, one with a 16 MiB ``event_id``; then the huge id and an old one re-sent."""
    size = 16 << 20

    def use(lam: Any) -> Outcome:
        ids = [f"e{i}" for i in range(1_999)] + ["x" * size]
        first = lam.ingest(_events([_event(i) for i in ids]))
        again = lam.ingest(_events([_event("e5"), _event("x" * size), _event("x" * (size - 1) + "y")]))
        right = (first.accepted, again.duplicates, again.accepted) == (2_000, 2, 1)
        return handled("all 2,000 stored; re-sent: the 16 MiB id and e5 dropped as duplicates, a near-twin kept",
                       right, f"first {first}, again {again}")
    return _with_adtech(directory, use)


def iso_times_mixed(directory: Path) -> Outcome:
    """ISO strings in one batch: fractional Z, unparsable, naive, zoned with fraction."""
    def use(lam: Any) -> Outcome:
        texts = {"frac": "2026-01-05T01:00:00.123Z", "bad": "yesterday", "naive": "2026-01-05T01:00:00",
                 "zoned": "2026-01-05 02:00:00.5+01:00"}
        ack = lam.ingest(_events([_event(k, event_time=v) for k, v in texts.items()], event_time=pa.string()))
        rejected = lam.rejected_rows()
        reasons = dict(zip(rejected.column("event_id").to_pylist(), rejected.column("reject_reason").to_pylist()))
        right = ack.accepted == 3 and list(reasons) == ["bad"]
        outcome = handled(f"fractional, naive and zoned rows accepted; row rejected: {reasons.get('bad')}", right,
                          f"accepted {ack.accepted} of 3 good; rejected {reasons}")
        return outcome
    return _with_adtech(directory, use)


def _bad_row_in(lam: Any, bad: dict[str, object], **types: pa.DataType) -> Outcome:
    good = [_event("good-1"), _event("good-2")]
    ack = lam.ingest(_events([good[0], bad, good[1]], **types))
    rejected = lam.rejected_rows()
    reasons = dict(zip(rejected.column("event_id").to_pylist(), rejected.column("reject_reason").to_pylist()))
    if bad["event_id"] not in reasons:
        return Outcome(gets=f"accepted ({ack.accepted} accepted, {ack.rejected} rejected)",
                       problems=["no error: the bad row was accepted"])
    outcome = Outcome(gets=f"row rejected: {reasons[bad['event_id']]}")
    return outcome.check_kept(ack.accepted == 2, f"good rows of the batch ({ack.accepted} of 2 kept)")


def _batch_error(make: Callable[[], pa.Table]) -> Callable[[Path], Outcome]:
    """A case: a batch that cannot be read at all must be one error, storing nothing."""
    def case(directory: Path) -> Outcome:
        def use(lam: Any) -> Outcome:
            end = lam.end_offset
            outcome = raised(lambda: lam.ingest(make()))
            if lam.end_offset != end:
                outcome.problems.append("part of the refused batch was stored")
            return outcome
        return _with_adtech(directory, use)
    return case


def _list_user_ids() -> pa.Table:
    batch = _events([_event("a")])
    return batch.set_column(batch.schema.get_field_index("user_id"), "user_id", pa.array([[1]]))


def _no_revenue() -> pa.Table:
    return _events([_event("a")]).drop_columns(["revenue"])


_ADTECH = "tests/unit/test_adtech_bad_input.py::"
_LAMBDA = "tests/unit/test_lambda_bad_input.py::"


def _row_case(name: str, fed: str, bad: dict[str, object], test: str, **types: pa.DataType) -> Case:
    return Case(name, fed, lambda d: _with_adtech(d, lambda lam: _bad_row_in(lam, bad, **types)), test)


def _year_3000(directory: Path) -> Outcome:
    def use(lam: Any) -> Outcome:
        newest = lam.latest_event_time_ms
        outcome = _bad_row_in(lam, _event("y3000", event_time="3000-01-01T00:00:00Z"), event_time=pa.string())
        if lam.latest_event_time_ms != newest:
            outcome.problems.append(f"the newest event time moved to {lam.latest_event_time_ms}")
        return outcome
    return _with_adtech(directory, use)


STREAM_CASES = [
    Case("pipeline: ParquetSink pointed at a file", "API: Pipeline(..., ParquetSink(<regular file>)), inline",
         sink_pointed_at_a_file,
         "tests/unit/test_pipeline_sink.py::test_an_inline_run_whose_sink_cannot_open_fails_through_result"),
    Case("pipeline: ParquetSink over an earlier run's parts", "API: a second pipeline into the same ParquetSink "
         "directory", sink_over_an_earlier_run,
         "tests/unit/test_dead_letter_replay_exactly_once.py::"
         "test_a_parquet_sink_refuses_an_earlier_runs_parts_unless_told"),
    Case("pipeline: missing ParquetSource path", "API: Pipeline(ParquetSource(<missing>), ...), inline",
         missing_parquet_source, "tests/unit/test_pipeline_local.py::test_missing_source_file_is_named"),
    Case("pipeline: resume with a CollectSink", "API: engine.run(pipeline, 'inline', resume=True)",
         resume_without_a_durable_sink,
         "tests/unit/test_pipeline_sink.py::test_resume_needs_a_sink_that_remembers_its_commits"),
    Case("lambda: an event_id of 16 MiB", "API: AdTech.ingest, 2,000 events, one id of 16 MiB, then re-sent",
         huge_event_id,
         _LAMBDA + "test_one_huge_event_id_costs_memory_linear_in_its_bytes_not_rows_times_length"),
    _row_case("lambda: an uncastable value in one row", "API: AdTech.ingest, user_id column as text, one 'x'",
              _event("uid", user_id="x"), _ADTECH + "test_uncastable_and_non_finite_values_reject_their_rows_only",
              user_id=pa.string()),
    _row_case("lambda: an inf cost", "API: AdTech.ingest, one row with cost=inf", _event("cost", cost=float("inf")),
              _ADTECH + "test_uncastable_and_non_finite_values_reject_their_rows_only"),
    _row_case("lambda: a -inf revenue", "API: AdTech.ingest, one row with revenue=-inf",
              _event("rev", revenue=float("-inf")),
              _ADTECH + "test_uncastable_and_non_finite_values_reject_their_rows_only"),
    _row_case("lambda: event time in seconds, not ms", "API: AdTech.ingest, one event_time of epoch seconds as ms",
              _event("secs", event_time=BASE_MS // 1000),
              _ADTECH + "test_implausible_times_are_rejected_and_do_not_move_the_default_query_time"),
    Case("lambda: event time in year 3000", "API: AdTech.ingest, one event_time '3000-01-01T00:00:00Z'",
         _year_3000, _ADTECH + "test_implausible_times_are_rejected_and_do_not_move_the_default_query_time"),
    Case("lambda: ISO times fractional/bad/naive/zoned in one batch", "API: AdTech.ingest, event_time strings",
         iso_times_mixed, _ADTECH + "test_fractional_iso_times_parse_next_to_a_bad_string_and_mixed_zones"),
    Case("lambda: a column that never casts", "API: AdTech.ingest, user_id of type list<int64>",
         _batch_error(_list_user_ids), _ADTECH + "test_a_column_of_a_type_that_never_casts_is_a_one_line_batch_error"),
    Case("lambda: a batch without a contract column", "API: AdTech.ingest, no 'revenue' column",
         _batch_error(_no_revenue),
         "tests/unit/test_lambda_log.py::test_a_batch_without_a_contract_column_is_a_clear_error"),
]
