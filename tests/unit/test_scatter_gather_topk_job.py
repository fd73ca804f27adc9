"""Unit tests of the top-k search job on the inline executor (no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from jobs import topk_search
from jobs.topk_search import build_search, load_word_counts, split_shards

pytestmark = pytest.mark.unit


def word_counts(seed: int = 0, size: int = 2000) -> pa.Table:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcd"))
    words = np.unique(["".join(w) for w in rng.choice(letters, size=(size, 5))])
    counts = rng.integers(1, 50, len(words))  # many ties: the tie-break matters
    return pa.table({"word": pa.array(words, pa.string()), "count": pa.array(counts)})


def write_output(directory: Path, table: pa.Table, parts: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for index, part in enumerate(split_shards(table, parts)):
        pq.write_table(part, directory / f"part-{index:05d}.parquet")
    (directory / "_SUCCESS").write_text("")
    return directory


def oracle(table: pa.Table, prefix: str, k: int) -> list[tuple[str, int]]:
    rows = [(w, c) for w, c in zip(table["word"].to_pylist(), table["count"].to_pylist())
            if w.startswith(prefix)]
    return sorted(rows, key=lambda row: (-row[1], row[0]))[:k]


TABLE = word_counts()


@settings(max_examples=20, deadline=None)
@given(prefix=st.text("abcde", max_size=3), k=st.integers(1, 12), shards=st.integers(1, 6))
def test_inline_search_equals_the_plain_python_oracle(prefix: str, k: int, shards: int) -> None:
    service = engine.run(build_search(split_shards(TABLE, shards), k), "inline")
    result = service.gather({"prefix": prefix, "k": k})
    got = list(zip(result.value["word"].to_pylist(), result.value["count"].to_pylist()))
    assert got == oracle(TABLE, prefix, k)


def test_load_reads_every_part(tmp_path: Path) -> None:
    loaded = load_word_counts(write_output(tmp_path / "wc", TABLE))
    assert loaded.num_rows == TABLE.num_rows
    assert loaded.schema == pa.schema([("word", pa.string()), ("count", pa.int64())])


def test_cli_prints_the_top_words(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    directory = write_output(tmp_path / "wc", TABLE)
    code = topk_search.main(["--input", str(directory), "--prefix", "ab", "--k", "3",
                             "--shards", "4", "--executor", "inline"])
    out = capsys.readouterr().out
    assert code == 0
    for word, count in oracle(TABLE, "ab", 3):
        assert f"{count:>12}  {word}" in out
    assert "4/4 shards answered" in out


def test_cli_missing_input_is_a_one_line_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    code = topk_search.main(["--input", str(tmp_path / "absent"), "--prefix", "a"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "does not exist" in err and "absent" in err


def test_cli_rejects_directories_without_parts_and_bad_columns(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert topk_search.main(["--input", str(tmp_path / "empty"), "--prefix", "a"]) == 2
    assert "no part-*.parquet" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"word": [1], "count": [2]}), bad / "part-00000.parquet")
    assert topk_search.main(["--input", str(bad), "--prefix", "a"]) == 2
    assert "column 'word' is int64" in capsys.readouterr().err
    assert topk_search.main(["--input", str(bad), "--prefix", "a", "--k", "0"]) == 2
    assert "--k must be >= 1" in capsys.readouterr().err


def test_help_explains_itself(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        topk_search.main(["--help"])
    assert info.value.code == 0
    assert "--deadline-ms" in capsys.readouterr().out


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.text("aé東b\U0010ffff", max_size=4), unique=True, max_size=40),
       counts=st.lists(st.integers(0, 3), min_size=40, max_size=40),
       prefix=st.text("aé東b", max_size=2), k=st.integers(1, 6))
def test_binary_search_on_sorted_shards_equals_a_scan_and_plain_python(
        words: list[str], counts: list[int], prefix: str, k: int) -> None:
    table = pa.table({"word": pa.array(words, pa.string()),
                      "count": pa.array(counts[:len(words)], pa.int64())})
    (sorted_shard,) = split_shards(table, 1)
    ranked = sorted((w for w in words if w.startswith(prefix)), key=lambda w: (-counts[words.index(w)], w))
    expected = [{"word": w, "count": counts[words.index(w)]} for w in ranked[:k]]
    assert topk_search.prefix_top_k(sorted_shard, {"prefix": prefix, "k": k}).to_pylist() == expected
    assert topk_search.prefix_top_k(table, {"prefix": prefix, "k": k}).to_pylist() == expected
    request = {"prefix": prefix, "k": 1000}
    by_search = topk_search.prefix_top_k(sorted_shard, request)
    by_scan = topk_search.prefix_top_k(table, request)  # no sorted_by metadata: a scan
    assert by_search.to_pylist() == by_scan.to_pylist()
    assert sorted(by_scan["word"].to_pylist()) == sorted(w for w in words if w.startswith(prefix))


def test_cli_rejects_a_nonpositive_host_count(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    directory = write_output(tmp_path / "wc", TABLE)
    assert topk_search.main(["--input", str(directory), "--prefix", "a", "--hosts", "0"]) == 2
    assert capsys.readouterr().err.strip() == "topk_search: error: --hosts must be >= 1, got 0"


@settings(max_examples=30, deadline=None)
@given(prefix=st.text("abcd", max_size=2), k=st.integers(1, 40))
def test_a_sorted_shard_with_other_columns_keeps_them_in_its_order(prefix: str, k: int) -> None:
    table = TABLE.select(["count", "word"]).append_column("n", pa.array(np.arange(TABLE.num_rows)))
    (sorted_shard,) = split_shards(table, 1)
    expected = [{"count": c, "word": w, "n": table["word"].to_pylist().index(w)} for w, c in oracle(TABLE, prefix, k)]
    assert topk_search.prefix_top_k(sorted_shard, {"prefix": prefix, "k": k}).to_pylist() == expected
    (count_first,) = split_shards(TABLE.select(["count", "word"]), 1)  # two columns, other order
    assert topk_search.prefix_top_k(count_first, {"prefix": prefix, "k": k}).to_pylist() == [
        {"count": c, "word": w} for w, c in oracle(TABLE, prefix, k)]
