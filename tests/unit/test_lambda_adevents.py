"""datasets.adevents: deterministic, realistic shape, and a working command line."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from datasets.adevents import EVENT_SCHEMA, AdEventSpec, generate_events, iter_event_batches, main

pytestmark = pytest.mark.unit


def test_same_seed_same_stream_and_contract_schema() -> None:
    spec = AdEventSpec(events=20_000, seed=4)
    first, second = generate_events(spec), generate_events(spec)
    assert first.equals(second) and first.schema == EVENT_SCHEMA and first.num_rows == 20_000
    assert not first.equals(generate_events(AdEventSpec(events=20_000, seed=5)))
    assert sum(batch.num_rows for batch in iter_event_batches(spec, 3_000)) == 20_000


def test_shape_views_clicks_purchases_duplicates_late_and_malformed() -> None:
    events = generate_events(AdEventSpec(events=50_000, seed=1))
    counts = {item["values"]: item["counts"] for item in pc.value_counts(events.column("event_type")).to_pylist()}
    assert counts["view"] > 10 * counts["click"] > 10 * counts["purchase"] > 0
    assert pc.count_distinct(events.column("event_id")).as_py() < events.num_rows  # re-sent events
    assert counts.get("hover", 0) > 0 or events.column("user_id").null_count > 0  # malformed rows
    times = events.column("event_time").cast("int64").fill_null(0).to_numpy()
    assert (times[1:] < times[:-1] - 5 * 60_000).any()  # some events arrive late
    purchases = events.filter(pc.equal(events.column("event_type"), "purchase"))
    assert purchases.column("ad_id").null_count == purchases.num_rows
    assert 200 <= pc.count_distinct(events.column("advertiser_id")).as_py() <= 300


def test_command_line_writes_parts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--events", "2500", "--batch", "1000", "--out", str(tmp_path)]) == 0
    parts = sorted(tmp_path.glob("part-*.parquet"))
    assert [part.name for part in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert sum(pq.read_metadata(part).num_rows for part in parts) == 2500
    assert main(["--events", "-1"]) == 2
    assert "events must be >= 0" in capsys.readouterr().err
