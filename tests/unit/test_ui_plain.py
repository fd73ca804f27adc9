"""Unit tests of the status page's plain-data conversion and its JSON encoding."""

from __future__ import annotations

import enum
import json
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.ui.plain import MAX_DEPTH, MAX_ITEMS, MAX_STRING, dumps, number, to_plain

pytestmark = pytest.mark.unit


class Color(enum.Enum):
    RED = "red"


@dataclass
class Metrics:
    stage_id: str
    rows: int
    busy_s: float


def test_odd_values_become_json_values() -> None:
    value = {"nan": math.nan, "inf": -math.inf, "np_int": np.int64(7), "np_float": np.float32(0.5),
             "enum": Color.RED, "set": {3, 1, 2}, "tuple": (1, "a"), "bytes": b"ok\xff", "counter": Counter(a=2),
             "dataclass": Metrics("s", 3, 0.25), 4: "int key", "object": object}
    plain = to_plain(value)
    assert plain == {"nan": None, "inf": None, "np_int": 7, "np_float": 0.5, "enum": "red", "set": [1, 2, 3],
                     "tuple": [1, "a"], "bytes": "ok\ufffd", "counter": {"a": 2},
                     "dataclass": {"stage_id": "s", "rows": 3, "busy_s": 0.25}, "4": "int key",
                     "object": "<class 'object'>"}
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain


def test_long_strings_lists_and_deep_nesting_are_cut() -> None:
    assert to_plain("x" * (MAX_STRING + 10)) == "x" * MAX_STRING + "…"
    assert len(to_plain(list(range(MAX_ITEMS + 10)))) == MAX_ITEMS
    nested: object = "leaf"
    for _ in range(MAX_DEPTH + 3):
        nested = [nested]
    cut = to_plain(nested)
    for _ in range(MAX_DEPTH):
        cut = cut[0]
    assert cut == "<list>"


def test_number_accepts_finite_numbers_only() -> None:
    assert [number(v) for v in (3, 2.5, True, "4", None, math.nan, math.inf)] == [3.0, 2.5, None, None, None, None,
                                                                                None]


def test_dumps_escapes_markup_characters_and_round_trips() -> None:
    name = '</script><img src=x onerror="alert(1)"> & co'
    text = dumps({"name": name})
    assert b"<" not in text and b">" not in text and b"&" not in text
    assert json.loads(text) == {"name": name}


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                    max_leaves=20))
def test_dumps_always_gives_valid_json(value: object) -> None:
    decoded = json.loads(dumps(value))

    def same(original: object, back: object) -> bool:
        if isinstance(original, float):
            return back is None if not math.isfinite(original) else back == original
        if isinstance(original, list):
            return isinstance(back, list) and len(back) == len(original) and all(map(same, original, back))
        if isinstance(original, dict):
            return isinstance(back, dict) and back.keys() == original.keys() and all(
                same(original[k], back[k]) for k in original)
        return back == original

    assert same(value, decoded)
