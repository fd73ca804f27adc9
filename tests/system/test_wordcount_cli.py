"""The word-count command line and the README, run as a user runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.oracles import table_to_dict, wordcount_oracle

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.wordcount", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, message", [
    (["/definitely/not/here.txt", "--local"], "error: input path does not exist: /definitely/not/here.txt"),
    (["--reducers", "0"], "error: --reducers must be at least 1, got 0"),
    (["--workers", "0"], "error: --workers must be at least 1, got 0"),
    (["--split-size", "lots"], "error: --split-size: not a size: 'lots'"),
    (["--max-bad-fraction", "1.5"], "error: --max-bad-fraction must be within [0, 1], got 1.5"),
    (["--max-bad-fraction", "nan"], "error: --max-bad-fraction must be within [0, 1], got nan"),
])
def test_cli_errors_are_one_line_without_traceback(args: list[str], message: str) -> None:
    done = run_cli(*args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [message + done.stderr.strip()[len(message):]]
    assert done.stderr.startswith(message)
    assert "Traceback" not in done.stderr


def test_an_address_where_no_cluster_answers_fails_at_once_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("a b\n")
    done = run_cli(str(tmp_path / "in.txt"), "--output", str(tmp_path / "out"), "--address", "127.0.0.1:1",
                   timeout=60)  # ray.init alone retried for minutes
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: no Ray cluster answers at 127.0.0.1:1 (")
    assert done.stderr.strip().endswith("Connection refused)") and len(done.stderr.strip().splitlines()) == 1


def test_cli_names_an_input_directory_without_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = run_cli(str(tmp_path / "empty"), "--local")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: input directory holds no files: {tmp_path / 'empty'}"


def test_existing_output_is_refused_then_overwritten(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("b a b\n")
    first = run_cli(str(tmp_path / "in.txt"), "--output", str(tmp_path / "out"), "--local")
    assert first.returncode == 0, first.stderr
    again = run_cli(str(tmp_path / "in.txt"), "--output", str(tmp_path / "out"), "--local")
    assert again.returncode == 2
    assert again.stderr.strip() == f"error: output directory already holds a result: {tmp_path / 'out'} " \
                                   "(use --overwrite to replace it)"
    forced = run_cli(str(tmp_path / "in.txt"), "--output", str(tmp_path / "out"), "--local", "--overwrite", "--top", "1")
    assert forced.returncode == 0
    assert re.search(r"^\s+b\s+2$", forced.stdout, re.M)


def test_cli_on_embedded_cluster_prints_top_words_counters_and_throughput(tmp_path: Path) -> None:
    files = [tmp_path / "in" / "a.txt", tmp_path / "in" / "b.txt"]
    files[0].parent.mkdir()
    files[0].write_bytes(("apple banana apple\n" * 300 + "cherry\n").encode())
    files[1].write_bytes(b"banana \xc3\xa9clair\n\xff broken\napple")
    done = run_cli(str(tmp_path / "in" / "*.txt"), "--output", str(tmp_path / "out"), "--reducers", "3",
                   "--workers", "2", "--top", "2", "--split-size", "1KiB")
    assert done.returncode == 0, done.stderr
    assert re.search(r"top 2 words:\n\s+apple\s+601\n\s+banana\s+301\n", done.stdout)
    assert re.search(r"invalid_input_records\s+1\n", done.stdout)
    assert re.search(r"throughput: [\d.,]+ MB/s\s+\(embedded Ray cluster, \d+ CPUs\)", done.stdout)
    import pyarrow.dataset as ds

    assert table_to_dict(ds.dataset(str(tmp_path / "out"), format="parquet").to_table()) == wordcount_oracle(files)


def test_readme_quickstart_commands_are_the_ones_documented() -> None:
    text = (ROOT / "README.md").read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", quickstart, re.S)
    assert commands == ["pip install . && python -m jobs.wordcount", "pip install '.[test]' && python -m pytest"]
    assert "python -m pip install --quiet --disable-pip-version-check '.[test]'" in (ROOT / ".ci" / "run").read_text()
