"""numpy <-> Arrow helpers that avoid pyarrow's pandas import: they must give exactly what
``to_numpy`` / ``pa.array`` / ``is_valid`` give (the oracle), for any offset and chunking."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.tables import arrow_array, int64_array, numpy_view, valid_mask

pytestmark = pytest.mark.unit

NUMERIC = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32(), pa.uint64(), pa.float32(),
           pa.float64()]


@given(st.sampled_from(NUMERIC), st.lists(st.integers(0, 100), max_size=40), st.integers(0, 5), st.integers(1, 3))
@settings(max_examples=150, deadline=None)
def test_numpy_view_equals_to_numpy_for_any_slice_and_chunking(kind: pa.DataType, values: list[int], start: int,
                                                                 chunks: int) -> None:
    array = pa.array(values, kind).slice(min(start, len(values)))
    assert numpy_view(array).dtype == array.to_numpy().dtype
    np.testing.assert_array_equal(numpy_view(array), array.to_numpy())
    pieces = [array.slice(i * len(array) // chunks, len(array) // chunks + 1) for i in range(chunks)]
    chunked = pa.chunked_array(pieces, kind)
    np.testing.assert_array_equal(numpy_view(chunked), chunked.to_numpy())


def test_numpy_view_falls_back_for_nulls_and_other_types() -> None:
    with_nulls = pa.array([1, None, 3], pa.int64())
    np.testing.assert_array_equal(numpy_view(with_nulls), with_nulls.to_numpy(zero_copy_only=False))
    stamps = pa.array([0, 5], pa.timestamp("s"))
    np.testing.assert_array_equal(numpy_view(stamps), stamps.to_numpy())


@given(st.lists(st.one_of(st.none(), st.integers(-5, 5)), max_size=40), st.integers(0, 9))
def test_valid_mask_equals_is_valid(values: list[int | None], start: int) -> None:
    array = pa.array(values, pa.int64()).slice(min(start, len(values)))
    np.testing.assert_array_equal(valid_mask(array), np.array(array.is_valid().to_pylist(), dtype=bool))
    assert valid_mask(pa.nulls(3, pa.string())).tolist() == [False] * 3


@given(st.sampled_from([np.int32, np.int64, np.uint64, np.float64, np.bool_]),
       st.lists(st.integers(0, 1000), max_size=40), st.integers(1, 3))
def test_arrow_array_equals_pa_array(dtype: type, values: list[int], step: int) -> None:
    source = np.array(values).astype(dtype)[::step]  # strided: copied to contiguous memory
    assert arrow_array(source).equals(pa.array(source))
    assert int64_array(np.array(values, np.int32)).equals(pa.array(values, pa.int64()))
