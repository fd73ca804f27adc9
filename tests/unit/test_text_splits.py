"""Line-aligned byte-range splits: every line is read exactly once, whatever the split size,
as lines or as whole-line blocks; lines that are not UTF-8 are reported, not read."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.io.splits import InputNotFoundError, InputSplit, expand_paths
from engine.io.text import BadLine, read_text_split
from engine.io.sources import TextSource

pytestmark = pytest.mark.unit

LINES = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=30)
TEXT_LINES = st.lists(st.sampled_from([b"a b", b"", b"\xc3\xa9t\xc3\xa9", b"\xff\xfe", b"x\xe2\x82", b"  ", b"\xe3\x80\x80z"])
                      | st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), max_size=30)


def expected_lines(data: bytes) -> list[bytes]:
    """Lines ending at b"\\n" only (as binary file iteration yields them); the last may lack one."""
    pieces = data.split(b"\n")
    return [p + b"\n" for p in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def read_all(path: Path, split_size: int, batch_size: int, records: str) -> tuple[list[tuple[int, bytes]], list[BadLine], int]:
    """Every (file offset, value bytes) read from all splits of ``path``, the bad lines, the bytes read."""
    values, bad, total = [], [], 0
    for split in TextSource([str(path)], split_size=split_size).plan_splits():
        for table, bad_lines, nbytes, offsets in read_text_split(split, batch_size, records):
            assert table.column_names == (["text"] if records == "blocks" else ["line"])
            assert len(offsets) == table.num_rows
            values.extend(zip(offsets.tolist(), (v.encode() for v in table.column(0).to_pylist())))
            bad.extend(bad_lines)
            total += nbytes
    return values, bad, total


@given(lines=TEXT_LINES, final_newline=st.booleans(), split_size=st.integers(1, 64), batch_size=st.integers(1, 64),
       records=st.sampled_from(["lines", "blocks"]))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_lines_and_blocks_hold_exactly_the_valid_lines(tmp_path: Path, lines: list[bytes], final_newline: bool,
                                                       split_size: int, batch_size: int, records: str) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    values, bad, total = read_all(path, split_size, batch_size, records)
    assert total == len(data)
    kept_lines = []
    for offset, value in values:
        assert data[offset:offset + len(value)] == value  # each value is the file's bytes at its offset
        assert value, "no empty values"
        pieces = expected_lines(value)
        assert len(pieces) == 1 or records == "blocks"
        kept_lines.extend(pieces)
    lines_of_file = expected_lines(data)
    assert sorted(kept_lines) == sorted(line for line in lines_of_file if is_utf8(line))
    assert sorted(b.data for b in bad) == sorted(line for line in lines_of_file if not is_utf8(line))
    for line in bad:
        assert data[line.offset:line.offset + len(line.data)] == line.data
        assert line.reason.startswith("invalid UTF-8: ")


def test_bad_line_reason_names_pythons_error_and_position(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"good\nab\xffc\n\xe2\x82\xacok\ntail \xe2\x82")
    for records in ("lines", "blocks"):
        values, bad, _ = read_all(path, 1000, 1000, records)
        assert [(b.offset, b.reason, b.data) for b in bad] == [
            (5, "invalid UTF-8: invalid start byte at byte 2 of the line", b"ab\xffc\n"),
            (16, "invalid UTF-8: unexpected end of data at byte 5 of the line", b"tail \xe2\x82")]
        # A bad line cuts a block into runs, so here blocks and lines hold the same values.
        assert values == [(0, b"good\n"), (10, "\u20acok\n".encode())]


def test_a_valid_block_is_one_value_and_bad_lines_cut_runs(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"a b\nc d\n" * 3 + b"\xff\n" + b"e f\n" * 2)
    values, bad, _ = read_all(path, 1 << 20, 1 << 20, "blocks")
    assert values == [(0, b"a b\nc d\n" * 3), (26, b"e f\n" * 2)]
    assert [b.offset for b in bad] == [24]


def test_many_bad_lines_in_one_block_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes((b"fine words\n" + b"bro\xc3ken\n") * 20_000)
    for records in ("lines", "blocks"):
        values, bad, total = read_all(path, 1 << 22, 1 << 22, records)
        assert len(bad) == 20_000 and total == path.stat().st_size
        assert bad[1].offset == 19 + 11 and bad[1].reason == "invalid UTF-8: invalid continuation byte at byte 3 of the line"
        assert sum(v.count(b"\n") for _, v in values) == 20_000


def test_unknown_records_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(b"x\n")
    with pytest.raises(ValueError, match="records"):
        next(read_text_split(TextSource([str(path)]).plan_splits()[0], 10, "words"))


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


def test_directory_without_files_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "_SUCCESS").write_text("")  # markers and hidden files are not input
    (empty / ".hidden").write_text("x\n")
    with pytest.raises(InputNotFoundError) as error:
        expand_paths([str(empty)])
    assert str(error.value) == f"input directory holds no files: {empty}"
    (empty / "notes.txt").write_text("a\n")
    assert expand_paths([str(empty)]) == [str(empty / "notes.txt")]
    with pytest.raises(InputNotFoundError) as error:
        expand_paths([str(empty)], suffixes=(".parquet", ".pq"))
    assert str(error.value) == f"input directory holds no *.parquet or *.pq files: {empty}"


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


@pytest.mark.parametrize("split_size", [7, 64, 100_000])
def test_a_line_longer_than_max_line_bytes_is_skipped_as_a_bad_line_with_a_preview(tmp_path: Path,
                                                                                   split_size: int) -> None:
    lines = [b"a" * 9, b"b" * 49, b"c" * 149, b"d" * 2999, b"e" * 99, b"f" * 5]
    data = b"".join(line + b"\n" for line in lines)
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    kept, bad = [], []
    for split in TextSource([str(path)], split_size=split_size, max_line_bytes=100).plan_splits():
        for table, bad_lines, _, _ in read_text_split(split, 16, "lines", max_line_bytes=100):
            kept += [v.encode() for v in table.column("line").to_pylist()]
            bad += bad_lines
    assert kept == [line + b"\n" for line in lines if len(line) + 1 <= 100]
    offsets = {line[:1]: data.index(line) for line in lines}
    assert [(b.offset, b.data) for b in bad] == [(offsets[b"c"], b"c" * 149 + b"\n"), (offsets[b"d"], b"d" * 1024)]
    assert bad[1].reason == "line of 3000 bytes is longer than max_line_bytes (100); its first 1024 bytes are kept"
    assert bad[0].reason.startswith("line of 150 bytes")
