"""The vectorized word splitter equals Python's str.split() on any text."""

from __future__ import annotations

import collections

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels.text import count_words, split_words

pytestmark = pytest.mark.unit

ALL_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
TEXT = st.text(alphabet=st.sampled_from(list("ab\u00e9\u6771Z") + list(ALL_WHITESPACE) + ["\u200b", "\u180e", "\x00"]),
               max_size=200)


@given(st.lists(TEXT, max_size=8))
@settings(max_examples=200, deadline=None)
def test_split_words_matches_str_split(lines: list[str]) -> None:
    values = [line + "\n" for line in lines]
    words = split_words(pa.array(values, pa.large_string())).to_pylist()
    assert words == [w for v in values for w in v.split()]


@given(TEXT)
@settings(max_examples=100, deadline=None)
def test_count_words_matches_counter(text: str) -> None:
    table = count_words(pa.array([text + "\n"]))
    got = dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist()))
    assert got == dict(collections.Counter(text.split()))
    assert table.schema.field("word").type == pa.string()
    assert table.schema.field("count").type == pa.int64()


def test_every_unicode_whitespace_separates_words() -> None:
    for char in ALL_WHITESPACE:
        assert split_words(pa.array([f"a{char}b\n"])).to_pylist() == ["a", "b"], repr(char)


def test_non_whitespace_lookalikes_do_not_split() -> None:
    for char in ("\u200b", "\u180e", "\ufeff", "\u2060"):
        assert split_words(pa.array([f"a{char}b\n"])).to_pylist() == [f"a{char}b"], repr(char)


def test_sliced_and_chunked_input() -> None:
    array = pa.array(["zero one\n", "two  three\n", "four\n"]).slice(1)
    assert split_words(array).to_pylist() == ["two", "three", "four"]
    chunked = pa.chunked_array([pa.array(["a b\n"]), pa.array(["c\n"])])
    assert split_words(chunked).to_pylist() == ["a", "b", "c"]
    assert split_words(pa.array([], pa.string())).to_pylist() == []
