"""Unit tests: tables across Ray calls as IPC streams (``engine.common.wire``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.common.wire import decode_table, encode_table

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.text(max_size=12)), st.one_of(st.none(), st.integers(-2**63, 2**63 - 1))),
                max_size=60), st.integers(0, 60), st.integers(0, 60))
def test_a_sliced_table_comes_back_equal_to_its_rows(rows: list[tuple[str | None, int | None]], start: int,
                                                     length: int) -> None:
    table = pa.table({"word": pa.array([w for w, _ in rows], pa.string()),
                      "count": pa.array([c for _, c in rows], pa.int64())})
    piece = table.slice(start, length)
    back = decode_table(encode_table(piece))
    assert back.schema == piece.schema
    assert back.to_pylist() == [{"word": w, "count": c} for w, c in rows[start:start + length]]


def test_a_slice_is_encoded_without_the_rest_of_its_buffers() -> None:
    table = pa.table({"word": pa.array(["x" * 20] * 100_000), "count": pa.array(range(100_000), pa.int64())})
    assert encode_table(table.slice(50_000, 100)).size < 10_000 < encode_table(table).size // 100


def test_encoding_and_decoding_never_import_pandas() -> None:
    code = ("import json, sys, numpy as np, pyarrow as pa\n"
            "from engine.common.wire import decode_table, encode_table\n"
            "words = pa.Array.from_buffers(pa.string(), 2, [None, pa.py_buffer(np.array([0, 1, 3], np.int32)),"
            " pa.py_buffer(b'abc')])\n"
            "table = pa.Table.from_arrays([words], names=['word'])\n"
            "back = decode_table(encode_table(table.slice(1)))\n"
            "print(json.dumps({'rows': back.num_rows, 'pandas': 'pandas' in sys.modules}))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"rows": 1, "pandas": False}
