"""Unit tests of the dead-letter store: round trips, listing, exactly-once replay, durability."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pyarrow as pa
import pytest

from engine.common.dead_letters import DeadLetterStore

from engine.errors import TransientError

pytestmark = pytest.mark.unit


def _raise_and_catch(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - we want the traceback attached
        return caught


@pytest.fixture
def tables() -> tuple[pa.Table, pa.Table]:
    words = pa.table({"word": ["a", None, "ccc"], "count": pa.array([1, 2, 3], pa.uint32())})
    events = pa.table(
        {
            "ts": pa.array([1_700_000_000_000_000], pa.timestamp("us", tz="UTC")),
            "tags": pa.array([["x", "y"]], pa.list_(pa.string())),
            "kind": pa.array(["click"]).dictionary_encode(),
        }
    ).replace_schema_metadata({"origin": "test"})
    return words, events


def test_add_list_rows_round_trip_with_two_schemas(tmp_path: Path, tables: tuple[pa.Table, pa.Table]) -> None:
    words, events = tables
    store = DeadLetterStore(tmp_path / "dlq")
    first = store.add("parse", words, _raise_and_catch(ValueError("bad token")), {"file": "in.txt", "offset": 12}, attempts=3)
    second = store.add("enrich", events, "lookup returned nothing")

    listing = store.list()
    assert listing.column_names == [
        "letter_id", "pattern", "step", "error_type", "error_message", "source",
        "attempts", "row_count", "created_at", "replayed",
    ]
    assert listing.schema.field("created_at").type == pa.timestamp("ms", tz="UTC")
    rows = listing.to_pylist()
    assert [r["letter_id"] for r in rows] == [first, second]
    assert rows[0]["step"] == "parse" and rows[0]["error_type"] == "ValueError"
    assert rows[0]["error_message"] == "bad token"
    assert json.loads(rows[0]["source"]) == {"file": "in.txt", "offset": 12}
    assert (rows[0]["attempts"], rows[0]["row_count"], rows[0]["replayed"]) == (3, 3, False)
    assert rows[1]["error_message"] == "lookup returned nothing" and rows[1]["row_count"] == 1

    assert store.rows(first).equals(words, check_metadata=True)
    assert store.rows(second).equals(events, check_metadata=True)
    assert store.list("parse").column("letter_id").to_pylist() == [first]
    assert store.count() == 4 and store.count("enrich") == 1 and store.count("other") == 0
    assert store.steps() == ["enrich", "parse"]
    assert "ValueError: bad token" in store.metadata(first)["error_traceback"]


def test_record_batches_and_empty_tables_are_accepted(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    batch_id = store.add("s", pa.record_batch({"v": [1.5]}), "e")
    empty_id = store.add("s", pa.table({"v": pa.array([], pa.float64())}), "e")
    assert store.rows(batch_id).column("v").to_pylist() == [1.5]
    assert store.rows(empty_id).num_rows == 0
    assert store.count("s") == 1


def test_replay_exactly_once_even_after_reopening_from_disk(tmp_path: Path, tables: tuple[pa.Table, pa.Table]) -> None:
    words, events = tables
    store = DeadLetterStore(tmp_path)
    a = store.add("parse", words, "e1")
    b = store.add("parse", words.slice(0, 1), "e2")
    other = store.add("enrich", events, "e3")

    seen: list[pa.Table] = []
    report = store.replay("parse", seen.append)
    assert (report.replayed_letters, report.replayed_rows, report.failed_letters) == (2, 4, [])
    assert report.replayed_ids == [a, b]
    assert [t.num_rows for t in seen] == [3, 1]

    assert store.replay("parse", seen.append).replayed_letters == 0
    reopened = DeadLetterStore(tmp_path)  # a new process sees the same marks
    assert reopened.replay("parse", seen.append).replayed_letters == 0
    assert len(seen) == 2
    assert reopened.list("parse").num_rows == 0
    assert reopened.list("parse", include_replayed=True).column("replayed").to_pylist() == [True, True]
    assert reopened.count() == 1
    assert reopened.list().column("letter_id").to_pylist() == [other]


def test_failing_replay_leaves_the_letter_for_next_time(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    good = store.add("load", pa.table({"k": [1]}), "e")
    bad = store.add("load", pa.table({"k": [2]}), "e")

    def fixed_for_one(rows: pa.Table) -> None:
        if rows["k"][0].as_py() == 2:
            raise TransientError("sink still down")

    report = store.replay("load", fixed_for_one)
    assert report.replayed_ids == [good]
    assert report.failed_letters == [(bad, "TransientError: sink still down")]
    assert DeadLetterStore(tmp_path).list("load").column("letter_id").to_pylist() == [bad]
    assert not list(tmp_path.glob("*.claim"))  # claims are released either way

    later = DeadLetterStore(tmp_path).replay("load", lambda rows: None)
    assert later.replayed_ids == [bad] and later.failed_letters == []
    assert store.count("load") == 0


def test_letter_claimed_by_another_replayer_is_skipped_until_its_claim_goes_stale(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path, claim_timeout_s=60.0)
    letter = store.add("s", pa.table({"k": [1]}), "e")
    claim = tmp_path / f"{letter}.claim"
    claim.write_text("{}")
    report = store.replay("s", lambda rows: None)
    assert report.skipped_letters == [letter] and report.replayed_letters == 0
    old = os.stat(claim).st_mtime - 3600
    os.utime(claim, (old, old))  # the other replayer crashed an hour ago
    assert store.replay("s", lambda rows: None).replayed_ids == [letter]


def test_torn_writes_are_invisible(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    letter = store.add("s", pa.table({"k": [1]}), "e")
    (tmp_path / ".tmp-deadbeef-s.0000000000000000001.0123456789abcdef.json").write_text("{trunc")
    # rows written but sidecar never committed (crash between the two renames)
    (tmp_path / "s.0000000000000000002.0123456789abcdef.arrow").write_bytes(b"partial")
    assert DeadLetterStore(tmp_path).list().column("letter_id").to_pylist() == [letter]


def test_never_pickles_files_are_arrow_and_json(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    letter = store.add("s", pa.table({"k": [1]}), _raise_and_catch(KeyError("k")), {"obj": object()})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{letter}.arrow", f"{letter}.json"]
    meta = json.loads((tmp_path / f"{letter}.json").read_text())
    assert meta["step"] == "s" and meta["error_type"] == "KeyError"
    assert "object object" in json.loads(meta["source"])["obj"]  # unserializable values kept as repr
    with pa.OSFile(str(tmp_path / f"{letter}.arrow")) as fh:
        assert pa.ipc.open_file(fh).read_all().num_rows == 1
    copy = pickle.loads(pickle.dumps(store))  # the store object itself ships to Ray actors
    assert copy.list().num_rows == 1


@pytest.mark.parametrize("stage", ["", "../etc", "a/b", ".hidden", "x" * 200, "sp ace", None])
def test_bad_step_ids_are_rejected(tmp_path: Path, stage: object) -> None:
    store = DeadLetterStore(tmp_path)
    with pytest.raises(ValueError, match="step id"):
        store.add(stage, pa.table({"k": [1]}), "e")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="step id"):
        store.replay(stage, lambda rows: None)  # type: ignore[arg-type]


def test_bad_letter_ids_and_inputs_give_clear_errors(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    with pytest.raises(ValueError, match="not a dead-letter id"):
        store.rows("../../etc/passwd")
    with pytest.raises(KeyError, match="no dead letter"):
        store.rows("s.0000000000000000001.0123456789abcdef")
    with pytest.raises(ValueError, match="Table or RecordBatch"):
        store.add("s", [{"k": 1}], "e")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attempts"):
        store.add("s", pa.table({"k": [1]}), "e", attempts=-1)
    file_path = tmp_path / "plain-file"
    file_path.write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        DeadLetterStore(file_path)


def test_purge_replayed_removes_only_replayed_letters(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    kept = store.add("a", pa.table({"k": [1]}), "e")
    store.add("b", pa.table({"k": [2]}), "e")
    store.replay("b", lambda rows: None)
    assert store.purge_replayed() == 1
    assert store.list(include_replayed=True).column("letter_id").to_pylist() == [kept]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{kept}.arrow", f"{kept}.json"]


def test_a_keyed_letter_added_twice_is_kept_once(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path)
    rows = pa.table({"k": [1, 2]})
    first = store.add("map", rows, "boom", {"task": "map-00001"}, pattern="mapreduce", key="map-00001/0")
    again = DeadLetterStore(tmp_path).add("map", rows, "boom", pattern="mapreduce", key="map-00001/0")
    other = store.add("map", rows, "boom", pattern="mapreduce", key="map-00002/0")
    assert first == again != other
    listing = DeadLetterStore(tmp_path).list("map")
    assert listing.column("letter_id").to_pylist() == [first, other]
    assert listing.column("pattern").to_pylist() == ["mapreduce", "mapreduce"]
    assert DeadLetterStore(tmp_path).all_rows("map").column("k").to_pylist() == [1, 2, 1, 2]
