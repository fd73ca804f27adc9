"""Line-aligned byte-range splits: every line is read exactly once, whatever the split size."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.io.splits import InputNotFoundError, InputSplit, expand_paths
from engine.io.text import read_text_split
from engine.io.sources import TextSource

pytestmark = pytest.mark.unit

LINES = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=30)


@given(lines=LINES, final_newline=st.booleans(), split_size=st.integers(1, 64), batch_size=st.integers(1, 64))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_splits_cover_every_line_once(tmp_path: Path, lines: list[bytes], final_newline: bool,
                                      split_size: int, batch_size: int) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    splits = TextSource([str(path)], split_size=split_size).plan_splits()
    kept: list[bytes] = []
    bad: list[bytes] = []
    for split in splits:
        for table, bad_lines, _, offsets in read_text_split(split, batch_size):
            values = table.column("line").to_pylist()
            kept.extend(v.encode() for v in values)
            bad.extend(b.data for b in bad_lines)
            assert [data[o:o + len(v.encode())] for o, v in zip(offsets, values)] == [v.encode() for v in values]
    # Lines end at b"\n" only (as binary file iteration does); the last may lack one.
    pieces = data.split(b"\n")
    expected = [p + b"\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
    assert sorted(kept + bad) == sorted(expected)
    for line in bad:
        with pytest.raises(UnicodeDecodeError):
            line.decode("utf-8")
    for line in kept:
        line.decode("utf-8")


def test_missing_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="does-not-exist"):
        expand_paths([str(tmp_path / "does-not-exist")])
    with pytest.raises(InputNotFoundError, match=r"nothing\*"):
        expand_paths([str(tmp_path / "nothing*")])


def test_directories_and_globs_expand_sorted_without_markers(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("b\n")
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / ".hidden").write_text("x\n")
    assert [Path(p).name for p in expand_paths([str(tmp_path)])] == ["a.txt", "b.txt"]
    assert [Path(p).name for p in expand_paths([str(tmp_path / "*.txt")])] == ["a.txt", "b.txt"]


def test_split_round_trips_through_json() -> None:
    split = InputSplit("text", "/x", 3, 9)
    assert InputSplit.from_json(split.to_json()) == split
