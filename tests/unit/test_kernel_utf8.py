"""UTF-8 validation equals Python's decoder: same verdict, position and reason, line by line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels.utf8 import REASONS, bad_lines, first_invalid

pytestmark = pytest.mark.unit

# Valid sequences of every length, and the invalid ones CPython singles out: overlongs,
# surrogates, past U+10FFFF, stray continuations, truncations, bytes never allowed.
PIECES = st.sampled_from([b"a", b"\n", b" ", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xed\x9f\xbf",
                          b"\xed\xa0\x80", b"\xe0\x80\xaf", b"\xe0\xa0", b"\xf4\x90\x80\x80", b"\xf0\x8f\xbf\xbf",
                          b"\xc0\xaf", b"\xc1", b"\xff", b"\x80", b"\xbf", b"\xe2\x82", b"\xf0\x9f", b"\xf0\x9f\x98",
                          b"\xc2", b"\xf5\x80", b"abcdefghijklmnop"])
BLOCKS = st.lists(PIECES, max_size=25).map(b"".join) | st.binary(max_size=60)


def python_first_error(block: bytes) -> tuple[int, str] | None:
    try:
        block.decode("utf-8")
        return None
    except UnicodeDecodeError as error:
        return error.start, error.reason


@given(BLOCKS)
@settings(max_examples=500, deadline=None)
def test_first_invalid_is_where_python_fails(block: bytes) -> None:
    error = python_first_error(block)
    assert first_invalid(block) == (-1 if error is None else error[0])


@given(BLOCKS)
@settings(max_examples=500, deadline=None)
def test_bad_lines_are_the_lines_python_cannot_decode(block: bytes) -> None:
    expected, position = [], 0
    for line in _lines(block):
        error = python_first_error(line)
        if error is not None:
            expected.append((position, position + len(line), position + error[0], error[1]))
        position += len(line)
    starts, ends, positions, reasons = bad_lines(block)
    got = [(int(a), int(b), int(p), REASONS[r]) for a, b, p, r in zip(starts, ends, positions, reasons)]
    assert got == expected


def _lines(block: bytes) -> list[bytes]:
    """Lines ending at b"\\n" only (terminator kept); the last may lack one."""
    pieces = block.split(b"\n")
    return [p + b"\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def test_inputs_of_every_buffer_kind() -> None:
    import numpy as np

    for block in (b"ok\n\xff\n", bytearray(b"ok\n\xff\n"), memoryview(b"ok\n\xff\n"),
                  np.frombuffer(b"ok\n\xff\n", np.uint8).copy()):
        assert first_invalid(block) == 3
        assert [int(s) for s in bad_lines(block)[0]] == [3]


def test_many_bad_lines_in_one_block() -> None:
    block = (b"good line\n" + b"bad \xff line\n") * 5000 + b"tail \xe2\x82"
    starts, ends, positions, reasons = bad_lines(block)
    assert len(starts) == 5001
    assert [int(starts[0]), int(ends[0]), int(positions[0])] == [10, 21, 14]
    assert REASONS[int(reasons[0])] == "invalid start byte"
    assert REASONS[int(reasons[-1])] == "unexpected end of data" and int(ends[-1]) == len(block)
