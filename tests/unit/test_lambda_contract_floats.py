"""The generic event contract rejects NaN, inf and -inf in float columns unless allowed.

The oracle is plain Python: per row, the first float field (schema order) whose value is
not finite names the reason; nulls are not the float check's business.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import SpecError
from engine.lambda_arch import EventContract
from engine.lambda_arch.contract import REASON, split_batch
from engine.lambda_arch.log import MasterLog

pytestmark = pytest.mark.unit

SCHEMA = pa.schema([("id", pa.int64()), ("price", pa.float64()), ("weight", pa.float32())])
FLOATS = ("price", "weight")
VALUES = st.one_of(st.none(), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -2.5, 1e300]),
                   st.floats(allow_nan=True, allow_infinity=True, width=32))


def _expected_reason(row: dict[str, Any]) -> str | None:
    for name in FLOATS:
        value = row[name]
        if value is not None and (math.isnan(value) or math.isinf(value)):
            return f"non-finite {name}"
    return None


def _key(value: Any) -> Any:
    """A comparable stand-in (NaN equals NaN here)."""
    return "nan" if isinstance(value, float) and math.isnan(value) else value


def _rows(table: pa.Table, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return [tuple(_key(row[name]) for name in names) for row in table.to_pylist()]


def _batch(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({field.name: pa.array([row[field.name] for row in rows], field.type) for field in SCHEMA},
                    schema=SCHEMA)


ROWS = st.lists(st.fixed_dictionaries({"id": st.integers(0, 100), "price": VALUES, "weight": VALUES}), max_size=30)


@settings(max_examples=150, deadline=None)
@given(rows=ROWS)
def test_the_default_contract_rejects_non_finite_floats_naming_the_column(rows: list[dict[str, Any]]) -> None:
    batch = _batch(rows)
    stored = _batch(rows).to_pylist()  # float32 rounding as Arrow stores it (1e300 becomes inf)
    valid, rejected = split_batch(EventContract(SCHEMA), batch)
    expected_valid = [row for row in stored if _expected_reason(row) is None]
    expected_rejected = [(str(row["id"]), _expected_reason(row)) for row in stored if _expected_reason(row)]
    assert _rows(valid, ("id", "price", "weight")) == _rows(_batch(expected_valid) if expected_valid
                                                           else SCHEMA.empty_table(), ("id", "price", "weight"))
    assert _rows(rejected, ("id", REASON)) == expected_rejected


@settings(max_examples=60, deadline=None)
@given(rows=ROWS)
def test_allow_non_finite_stores_every_row_as_it_is(rows: list[dict[str, Any]]) -> None:
    batch = _batch(rows)
    valid, rejected = split_batch(EventContract(SCHEMA, allow_non_finite=True), batch)
    assert _rows(valid, ("id", "price", "weight")) == _rows(batch, ("id", "price", "weight"))
    assert rejected.num_rows == 0


def test_a_custom_validation_keeps_its_rejections_and_gains_the_non_finite_ones() -> None:
    def validate(batch: pa.Table) -> tuple[pa.Table, pa.Table]:
        negative = pa.compute.less(batch.column("id"), 0)
        rejected = batch.filter(negative).select(["id"]).append_column(
            REASON, pa.array(["negative id"] * pa.compute.sum(negative).as_py(), pa.string()))
        return batch.filter(pa.compute.invert(negative)), rejected

    batch = _batch([{"id": -1, "price": 1.0, "weight": 1.0}, {"id": 2, "price": math.inf, "weight": 0.5},
                    {"id": 3, "price": 2.0, "weight": math.nan}, {"id": 4, "price": 2.0, "weight": 2.0}])
    valid, rejected = split_batch(EventContract(SCHEMA, validate), batch)
    assert valid.column("id").to_pylist() == [4]
    assert list(zip(rejected.column("id").to_pylist(), rejected.column(REASON).to_pylist())) == [
        (-1, "negative id"), (2, "non-finite price"), (3, "non-finite weight")]


def test_ingest_sends_non_finite_rows_to_the_dead_letters_with_their_reason(tmp_path: Any) -> None:
    batch = _batch([{"id": 1, "price": -math.inf, "weight": 1.0}, {"id": 2, "price": 3.0, "weight": 1.0}])
    with MasterLog(tmp_path, EventContract(SCHEMA)) as log:
        ack, stored = log.ingest(batch)
        assert (ack.accepted, ack.rejected) == (1, 1)
        assert stored.column("id").to_pylist() == [2]
        rejected = log.rejected_rows()
        assert list(zip(rejected.column("id").to_pylist(), rejected.column(REASON).to_pylist())) == [
            ("1", "non-finite price")]


def test_allow_non_finite_must_be_a_bool() -> None:
    with pytest.raises(SpecError, match="allow_non_finite must be True or False, got 'yes'"):
        EventContract(SCHEMA, allow_non_finite="yes")  # type: ignore[arg-type]
