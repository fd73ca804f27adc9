"""Local mode (the oracle executor) against the plain-Python Counter, and the output contract."""

from __future__ import annotations

import os
from pathlib import Path

import fastparquet
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import JobOptions, OutputExistsError
from jobs.wordcount_job import wordcount_job
from tests.oracles import table_to_dict, wordcount_oracle

pytestmark = pytest.mark.unit

PIECES = st.sampled_from(["word", "Word", "w\u00e9rd", "\u6771\u4eac", "a", " ", "  ", "\t", "\n", "\r\n", "\n\n",
                          "\u00a0", "\u3000", "\x1c", "\u2028", "x\x00y", "\xff"])
FILE_BYTES = st.lists(PIECES, max_size=40).map(
    lambda parts: b"".join(b"\xff\xfe" if p == "\xff" else p.encode("utf-8") for p in parts))


def write_files(directory: Path, contents: list[bytes]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(contents):
        path = directory / f"in-{index}.txt"
        path.write_bytes(data)
        paths.append(path)
    return paths


@given(contents=st.lists(FILE_BYTES, min_size=1, max_size=3), reducers=st.integers(1, 5),
       split_size=st.integers(1, 80))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_local_mode_equals_counter_oracle(tmp_path_factory: pytest.TempPathFactory, contents: list[bytes],
                                          reducers: int, split_size: int) -> None:
    base = tmp_path_factory.mktemp("wc")
    files = write_files(base / "in", contents)
    # arbitrary bytes are often not UTF-8: no bad-record limit here (tests/unit/test_bad_input_mapreduce.py has it)
    result = engine.run(wordcount_job([str(base / "in")], str(base / "out"), reducers=reducers, split_size=split_size,
                                      options=engine.JobOptions(max_bad_record_fraction=1.0)), "inline").result()
    assert table_to_dict(result.table()) == wordcount_oracle(files)
    invalid = sum(1 for f in files for line in f.read_bytes().split(b"\n") if not _valid(line))
    assert result.counters["invalid_input_records"] == invalid
    assert result.dead_letters().num_rows == invalid


def _valid(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def check_output_contract(output: Path, reducers: int) -> None:
    """Parts sorted by word, no word in two parts, _SUCCESS last, both readers agree."""
    parts = sorted(p for p in os.listdir(output) if p.startswith("part-"))
    assert parts == [f"part-{i:05d}.parquet" for i in range(reducers)]
    assert (output / "_SUCCESS").read_bytes() == b""
    assert not [p for p in os.listdir(output) if p.endswith(".tmp")]
    success_time = (output / "_SUCCESS").stat().st_mtime_ns
    seen: set[str] = set()
    for part in parts:
        path = output / part
        assert path.stat().st_mtime_ns <= success_time
        table = pq.read_table(path)
        assert table.schema.names == ["word", "count"]
        assert str(table.schema.field("word").type) == "string"
        assert str(table.schema.field("count").type) == "int64"
        words = table.column("word").to_pylist()
        assert words == sorted(words)
        assert not seen.intersection(words)
        seen.update(words)
        frame = fastparquet.ParquetFile(str(path)).to_pandas()
        assert list(frame["word"]) == words
        assert [int(c) for c in frame["count"]] == table.column("count").to_pylist()


def test_output_contract_and_readers_agree(tmp_path: Path) -> None:
    files = write_files(tmp_path / "in", [("alpha beta \u00e9t\u00e9 gamma\n" * 50 + "beta\n").encode(),
                                          b"zeta eta\r\ntheta  alpha\n\xff\xfe bad\n"])
    result = engine.run(wordcount_job([str(tmp_path / "in")], str(tmp_path / "out"), reducers=3, split_size=64,
                                      options=JobOptions(max_bad_record_fraction=0.05)), "inline").result()
    check_output_contract(tmp_path / "out", 3)
    assert table_to_dict(result.table()) == wordcount_oracle(files)
    dead = result.dead_letters().to_pylist()
    assert [(Path(d["location"]).name, d["offset"], d["step"]) for d in dead] == [("in-1.txt", 23, "read")]
    assert dead[0]["record"] == b"\xff\xfe bad\n" and "invalid UTF-8" in dead[0]["error"]


def test_empty_input_gives_empty_output_with_success(tmp_path: Path) -> None:
    write_files(tmp_path / "in", [b"", b""])
    result = engine.run(wordcount_job([str(tmp_path / "in")], str(tmp_path / "out"), reducers=2), "inline").result()
    check_output_contract(tmp_path / "out", 2)
    assert result.table().num_rows == 0


def test_existing_result_is_refused_unless_overwrite(tmp_path: Path) -> None:
    write_files(tmp_path / "in", [b"one two\n"])
    engine.run(wordcount_job([str(tmp_path / "in")], str(tmp_path / "out"), reducers=1), "inline").result()
    with pytest.raises(OutputExistsError, match="already holds a result"):
        engine.run(wordcount_job([str(tmp_path / "in")], str(tmp_path / "out"), reducers=1), "inline").result()
    again = engine.run(wordcount_job([str(tmp_path / "in")], str(tmp_path / "out"), reducers=2,
                                    options=JobOptions(overwrite=True)), "inline").result()
    assert table_to_dict(again.table()) == {"one": 1, "two": 1}
    check_output_contract(tmp_path / "out", 2)
