"""Master log: the event contract, dead letters, de-duplication semantics, durability, reopening."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.adevents import AdEventSpec, generate_events
from engine.errors import SpecError
from engine.lambda_arch import EventContract
from engine.lambda_arch.dedup import DedupIndex, EventIds
from engine.lambda_arch.log import MasterLog
from jobs.adtech.app import CONTRACT
from jobs.adtech.events import validate_events
from jobs.adtech.oracle import AdEventOracle
from jobs.adtech.testing import BASE_MS, build_batch, draw_stream

pytestmark = pytest.mark.unit


def _row(event_id: str = "a", minute: int = 0, **changes: object) -> dict[str, object]:
    row = {"event_id": event_id, "event_time": BASE_MS + minute * 60_000, "event_type": "view", "user_id": 1,
           "ad_id": 2, "advertiser_id": 3, "cost": 0.5, "revenue": 0.0}
    row.update(changes)
    return row


def test_validation_gives_one_reason_per_rejected_row() -> None:
    batch = build_batch([_row("ok"), _row("u", user_id=None), _row("t", event_type="hover"),
                         _row("c", cost=-1.0), _row("n", revenue=float("nan")), _row("ad", ad_id=None),
                         _row("p", event_type="purchase", ad_id=None, revenue=5.0)])
    valid, rejected = validate_events(batch)
    assert valid.column("event_id").to_pylist() == ["ok", "p"]
    assert dict(zip(rejected.column("event_id").to_pylist(), rejected.column("reject_reason").to_pylist())) == {
        "u": "missing user_id", "t": "unknown event_type", "c": "negative or non-finite cost",
        "n": "negative or non-finite revenue", "ad": "missing ad_id"}


def test_unparsable_string_times_are_rejected_and_iso_times_parsed() -> None:
    batch = build_batch([_row("a"), _row("b"), _row("c")]).set_column(
        1, "event_time", pa.array(["2026-01-05T10:00:00Z", "yesterday", None]))
    valid, rejected = validate_events(batch)
    assert valid.column("event_time").cast(pa.int64()).to_pylist() == [BASE_MS + 10 * 3_600_000]
    assert rejected.column("reject_reason").to_pylist() == ["unparsable event_time", "missing event_time"]


def test_a_batch_without_a_contract_column_is_a_clear_error() -> None:
    batch = build_batch([_row()]).drop_columns(["revenue"])
    with pytest.raises(ValueError, match="no column 'revenue'"):
        validate_events(batch)


def test_ingest_acknowledges_offsets_and_stores_rejects_as_dead_letters(tmp_path: object) -> None:
    with MasterLog(tmp_path, CONTRACT) as log:
        ack, stored = log.ingest(build_batch([_row("a"), _row("b", cost=-2.0), _row("c"), _row("a")]))
        assert (ack.first_offset, ack.end_offset, ack.accepted, ack.duplicates, ack.rejected) == (0, 2, 2, 1, 1)
        assert stored.column("offset").to_pylist() == [0, 1]
        assert log.rejected_rows().column("reject_reason").to_pylist() == ["negative or non-finite cost"]
        ack, _ = log.ingest(build_batch([_row("d")]))
        assert (ack.first_offset, ack.end_offset) == (2, 3)
        assert log.read().column("event_id").to_pylist() == ["a", "c", "d"]
        assert log.read(1, 2).column("offset").to_pylist() == [1]


def test_a_duplicate_is_dropped_only_within_the_horizon(tmp_path: object) -> None:
    with MasterLog(tmp_path, CONTRACT, dedup_horizon_ms=60 * 60_000) as log:
        log.ingest(build_batch([_row("x", minute=0)]))
        assert log.ingest(build_batch([_row("x", minute=0)]))[0].duplicates == 1
        log.ingest(build_batch([_row("y", minute=61)]))  # the watermark moves past x's horizon
        ack, _ = log.ingest(build_batch([_row("x", minute=0)]))
        assert (ack.accepted, ack.duplicates) == (1, 0)


def test_reopening_continues_offsets_and_dedup(tmp_path: object) -> None:
    events = generate_events(AdEventSpec(events=5_000, seed=3, span_hours=4))
    with MasterLog(tmp_path, CONTRACT) as log:
        for start in range(0, 3_000, 1_000):
            log.ingest(events.slice(start, 1_000))
        end = log.end_offset
    (tmp_path / "log" / ".tmp-seg-crashed.arrow").write_bytes(b"torn")  # an unacknowledged write
    with MasterLog(tmp_path, CONTRACT) as log:
        assert log.end_offset == end
        assert not list((tmp_path / "log").glob(".tmp-*"))
        ack, _ = log.ingest(events.slice(0, 1_000))  # everything re-sent: all duplicates or rejects
        assert ack.accepted == 0
        ack, _ = log.ingest(events.slice(3_000, 2_000))
        assert ack.first_offset == end


def test_the_directory_is_locked_against_a_second_writer(tmp_path: object) -> None:
    with MasterLog(tmp_path, CONTRACT):
        with pytest.raises(RuntimeError, match="open in another process"):
            MasterLog(tmp_path, CONTRACT)


def test_segments_are_durable_files_with_offsets(tmp_path: object) -> None:
    with MasterLog(tmp_path, CONTRACT) as log:
        log.ingest(build_batch([_row("a"), _row("b")]))
        log.ingest(build_batch([_row("c")]))
        names = sorted(path.name for path in (tmp_path / "log").glob("seg-*.arrow"))
    assert names == ["seg-0000000000000000-0000000000000002.arrow", "seg-0000000000000002-0000000000000003.arrow"]
    assert all(os.path.getsize(tmp_path / "log" / name) > 0 for name in names)


@st.composite
def _streams(draw: st.DrawFn) -> list[pa.Table]:
    return draw_stream(draw, st)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(batches=_streams(), horizon_minutes=st.sampled_from([0, 30, 600, 24 * 60]))
def test_ingest_matches_the_oracle_row_for_row(tmp_path_factory: pytest.TempPathFactory,
                                               batches: list[pa.Table], horizon_minutes: int) -> None:
    oracle = AdEventOracle(horizon_minutes * 60_000)
    with MasterLog(tmp_path_factory.mktemp("log"), CONTRACT, dedup_horizon_ms=horizon_minutes * 60_000) as log:
        ends = []
        for batch in batches:
            ack, _ = log.ingest(batch)
            expected = oracle.ingest(batch)
            assert (ack.accepted, ack.duplicates, ack.rejected) == (
                expected["accepted"], expected["duplicates"], expected["rejected"])
            ends.append(ack.end_offset)
        for end in ends:  # the default "now" of queries covering offsets below ``end``
            times = [row["event_time"] for row in oracle.rows[:end]]
            assert log.newest_time_below(end) == (max(times) if times else None)
        stored = log.read()
    assert stored.column("event_id").to_pylist() == [row["event_id"] for row in oracle.rows]
    assert stored.column("offset").to_pylist() == list(range(len(oracle.rows)))


def test_dedup_index_survives_many_runs_and_compares_ids_exactly_on_a_hash_collision() -> None:
    index = DedupIndex(horizon_ms=10**12)
    ids = EventIds.of(pa.array([f"id{i}" for i in range(5_000)]))
    times = np.arange(5_000, dtype=np.int64)
    for start in range(0, 5_000, 500):
        part = np.zeros(5_000, dtype=bool)
        part[start:start + 500] = True
        assert not index.duplicates(ids.take(part), times[part]).any()
        index.add(ids.take(part), times[part])
    assert index.duplicates(ids, times).all()
    assert index.entries() == 5_000
    stored = EventIds.of(pa.array([f"id{i}" for i in range(10)]))
    forged = EventIds.of(pa.array([f"other{i}" for i in range(10)]))
    forged = EventIds(forged.values, stored.hashes.copy(), forged.valid)  # same hashes, other ids
    assert not index.duplicates(forged, times[:10]).any()


_LINES = EventContract(pa.schema([pa.field("line", pa.string(), nullable=False), pa.field("tag", pa.int64())]))


def test_the_default_validation_casts_and_rejects_missing_required_fields(tmp_path: object) -> None:
    batch = pa.table({"line": ["a", None, "c"], "tag": pa.array([1, 2, None], pa.int32()), "extra": [0, 0, 0]})
    with MasterLog(tmp_path, _LINES) as log:
        ack, stored = log.ingest(batch)
        assert (ack.accepted, ack.duplicates, ack.rejected) == (2, 0, 1)  # no id column: nothing is a duplicate
        assert stored.column_names == ["offset", "line", "tag"] and stored.schema.field("tag").type == pa.int64()
        assert stored.column("line").to_pylist() == ["a", "c"]
        assert log.rejected_rows().column("reject_reason").to_pylist() == ["missing line"]
        assert log.max_event_time_ms is None
        with pytest.raises(ValueError, match="no column 'tag'"):
            log.ingest(pa.table({"line": ["x"]}))
        ack, stored = log.ingest(pa.table({"line": ["x", "y"], "tag": ["seven", "7"]}))  # one bad value: one row
        assert (ack.accepted, ack.rejected) == (1, 1) and stored.column("tag").to_pylist() == [7]
        assert log.rejected_rows().column("reject_reason").to_pylist()[-1] == "invalid tag (not int64)"
        with pytest.raises(ValueError, match=r"^event batch column 'tag' of type struct<a: int64> cannot be cast "
                                             r"to int64$"):
            log.ingest(pa.table({"line": ["x"], "tag": [{"a": 1}]}))


def test_a_validation_function_that_breaks_its_contract_is_named(tmp_path: object) -> None:
    def drops_rows(batch: pa.Table) -> tuple[pa.Table, pa.Table]:
        valid = batch.slice(0, 1).select(["line", "tag"])
        return valid, pa.table({"reject_reason": pa.array([], pa.string())})

    with MasterLog(tmp_path, EventContract(_LINES.schema, drops_rows)) as log:
        with pytest.raises(SpecError, match="split 2 rows into 1 valid and 0 rejected"):
            log.ingest(pa.table({"line": ["a", "b"], "tag": [1, 2]}))
        assert log.end_offset == 0


def test_contract_errors_and_a_log_of_another_contract(tmp_path: object) -> None:
    with pytest.raises(SpecError, match="may not have a column 'offset'"):
        EventContract(pa.schema([("offset", pa.int64())]))
    with pytest.raises(SpecError, match="id_column needs a time_column"):
        EventContract(_LINES.schema, id_column="line")
    with pytest.raises(SpecError, match="time_column 'line' has type string"):
        EventContract(_LINES.schema, time_column="line")
    with MasterLog(tmp_path, _LINES) as log:
        log.ingest(pa.table({"line": ["a"], "tag": [1]}))
    with pytest.raises(RuntimeError, match="the event contract says"):
        MasterLog(tmp_path, CONTRACT)


def test_the_segment_source_reads_the_log_in_splits_of_whole_segments(tmp_path: object) -> None:
    from engine.lambda_arch.segment_source import SegmentSource

    with MasterLog(tmp_path, CONTRACT) as log:
        for start in range(0, 50, 10):
            log.ingest(build_batch([_row(f"e{i}") for i in range(start, start + 10)]))
        segments = log.segments()
        source = SegmentSource(segments, log.schema, ["cost", "event_id"], split_rows=20)
        splits = source.plan_splits()
        assert [(s.start, s.end) for s in splits] == [(0, 2), (2, 4), (4, 5)]
        read = pa.concat_tables([batch.table for split in splits for batch in source.read_split(split)])
        assert read.column_names == ["cost", "event_id"]  # only these, in this order
        assert read.to_pylist() == log.read(columns=["cost", "event_id"]).to_pylist()
        assert read.num_rows == 50
        assert source.empty_table().schema == read.schema
