"""The compiled word count and the numpy splitter equal Python's str.split() on any text."""

from __future__ import annotations

import collections

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels.text import count_words, count_words_reference, split_words
from engine.kernels.whitespace import whitespace_characters
from engine.kernels.wordcount import count_words as compiled_count_words

pytestmark = pytest.mark.unit

# Written out, not derived from the kernels' tables: the oracle must be independent.
ALL_WHITESPACE = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and chr(c).isspace())
LOOKALIKES = ["\u200b", "\u180e", "\ufeff", "\u2060", "\x00", "\x08", "\x0e", "\x1b", "\u00a1", "\u2030", "\u3001"]
CHARS = st.sampled_from(list("ab\u00e9\u6771Z") + list(ALL_WHITESPACE) + LOOKALIKES + ["\U0001F600"])
VALUE = st.text(alphabet=CHARS, max_size=60) | st.text(max_size=30)
VALUES = st.lists(st.none() | VALUE, max_size=12)


def counter_of(values: list[str | None]) -> dict[str, int]:
    return dict(collections.Counter(w for v in values if v is not None for w in v.split()))


def as_dict(table: pa.Table) -> dict[str, int]:
    words = table.column("word").to_pylist()
    assert len(set(words)) == len(words)
    return dict(zip(words, table.column("count").to_pylist()))


def test_whitespace_table_is_pythons() -> None:
    assert "".join(whitespace_characters()) == ALL_WHITESPACE
    assert len(ALL_WHITESPACE) == 29


@given(VALUES, st.sampled_from([pa.string(), pa.large_string()]))
@settings(max_examples=300, deadline=None)
def test_count_words_equals_counter_per_value(values: list[str | None], kind: pa.DataType) -> None:
    table = count_words(pa.array(values, kind))
    assert as_dict(table) == counter_of(values)
    assert table.schema.field("word").type == pa.string()
    assert table.schema.field("count").type == pa.int64()
    assert as_dict(count_words_reference(pa.array(values, kind))) == counter_of(values)


@given(VALUES)
@settings(max_examples=200, deadline=None)
def test_split_words_equals_str_split_per_value(values: list[str | None]) -> None:
    assert split_words(pa.array(values, pa.large_string())).to_pylist() == \
        [w for v in values if v is not None for w in v.split()]


def test_values_never_join_without_trailing_whitespace() -> None:
    for kernel in (count_words, count_words_reference):
        assert as_dict(kernel(pa.array(["a b", "c d"]))) == {"a": 1, "b": 1, "c": 1, "d": 1}
        assert as_dict(kernel(pa.array(["ab", "ab", "", "a", "b"]))) == {"ab": 2, "a": 1, "b": 1}
    assert split_words(pa.array(["a b", "c d"])).to_pylist() == ["a", "b", "c", "d"]


def test_every_unicode_whitespace_separates_words() -> None:
    for char in ALL_WHITESPACE:
        values = [f"a{char}b", f"{char}a", f"b{char}"]
        assert as_dict(count_words(pa.array(values))) == {"a": 2, "b": 2}, repr(char)
        assert split_words(pa.array([f"a{char}b"])).to_pylist() == ["a", "b"], repr(char)


def test_non_whitespace_lookalikes_do_not_split() -> None:
    for char in LOOKALIKES:
        assert as_dict(count_words(pa.array([f"a{char}b", f"a{char}b"]))) == {f"a{char}b": 2}, repr(char)
        assert split_words(pa.array([f"a{char}b"])).to_pylist() == [f"a{char}b"], repr(char)


def test_long_words_sharing_a_prefix_stay_apart() -> None:
    values = ["abcdefgh abcdefghi abcdefghij abcdefghik", "abcdefghij" * 30 + " " + "abcdefghij" * 30 + "x",
              "abcdefgh", "abcdefghij" * 30]
    assert as_dict(count_words(pa.array(values))) == counter_of(values)


def test_many_distinct_words_grow_the_table() -> None:
    values = [" ".join(f"w{i}" for i in range(start, start + 5000)) for start in range(0, 60000, 5000)]
    values += ["w7 w7\tw70000"]
    assert as_dict(count_words(pa.array(values))) == counter_of(values)


def test_sliced_chunked_null_and_empty_inputs() -> None:
    array = pa.array(["zero one", "two  three", None, "four"]).slice(1)
    assert as_dict(count_words(array)) == {"two": 1, "three": 1, "four": 1}
    assert split_words(array).to_pylist() == ["two", "three", "four"]
    chunked = pa.chunked_array([pa.array(["a b"]), pa.array(["c", "a"])])
    assert as_dict(count_words(chunked)) == {"a": 2, "b": 1, "c": 1}
    assert split_words(chunked).to_pylist() == ["a", "b", "c", "a"]
    for empty in (pa.array([], pa.string()), pa.array([]), pa.array([None, None]), pa.chunked_array([], pa.string())):
        assert count_words(empty).num_rows == 0
        assert split_words(empty).to_pylist() == []


def test_rows_come_in_first_seen_order() -> None:
    table = count_words(pa.array(["b a b", "c a"]))
    assert table.column("word").to_pylist() == ["b", "a", "c"]
    assert table.column("count").to_pylist() == [2, 2, 1]


def test_text_module_reexports_the_compiled_kernel() -> None:
    values = pa.array(["x y x"])
    assert count_words(values).equals(compiled_count_words(values))


def test_non_string_input_is_refused() -> None:
    with pytest.raises(TypeError, match="string"):
        count_words(pa.array([1, 2]))
