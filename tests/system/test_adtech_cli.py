"""``python -m jobs.adtech`` as a user runs it: every option in ``--help`` is validated
with a one-line error and exit status 2 (no traceback), and a small inline run works."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


def run_demo(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs.adtech", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def a_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "events.txt"
    path.write_text("not a directory\n")
    return path


BAD = [  # (arguments, the whole message after "error: ")
    (["--events", "-1"], "argument --events: must be an integer from 0 to 20,000,000, got -1"),
    (["--events", "100000000000"], "argument --events: must be an integer from 0 to 20,000,000, got 100000000000"),
    (["--events", "lots"], "argument --events: not an integer: 'lots'"),
    (["--rate", "0"], "argument --rate: must be a number > 0 and <= 1,000,000,000, got 0"),
    (["--rate", "-5"], "argument --rate: must be a number > 0 and <= 1,000,000,000, got -5"),
    (["--rate", "nan"], "argument --rate: must be a number > 0 and <= 1,000,000,000, got nan"),
    (["--rate", "inf"], "argument --rate: must be a number > 0 and <= 1,000,000,000, got inf"),
    (["--rate", "fast"], "argument --rate: not a number: 'fast'"),
    (["--batch-every", "0"], "argument --batch-every: must be a number > 0 and <= 86,400, got 0"),
    (["--batch-every", "nan"], "argument --batch-every: must be a number > 0 and <= 86,400, got nan"),
    (["--batch-every", "1e9"], "argument --batch-every: must be a number > 0 and <= 86,400, got 1e9"),
    (["--batch-rows", "-5"], "argument --batch-rows: must be an integer >= 1, got -5"),
    (["--batch-rows", "0"], "argument --batch-rows: must be an integer >= 1, got 0"),
    (["--shards", "0"], "argument --shards: must be an integer from 1 to 64, got 0"),
    (["--shards", "100000"], "argument --shards: must be an integer from 1 to 64, got 100000"),
    (["--seed", "-3"], "argument --seed: must be an integer from 0 to 4,294,967,295, got -3"),
    (["--seed", "4294967296"], "argument --seed: must be an integer from 0 to 4,294,967,295, got 4294967296"),
    (["--top", "-1"], "argument --top: must be an integer >= 0, got -1"),
    (["--executor", "spark"], "argument --executor: invalid choice: 'spark' (choose from 'ray', 'inline')"),
    (["--ui=yes"], "argument --ui: ignored explicit argument 'yes'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--events"], "argument --events: expected one argument"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(args) for args, _ in BAD])
def test_a_bad_option_is_one_line_and_exit_status_2(args: list[str], message: str) -> None:
    done = run_demo(*args)
    assert done.returncode == 2
    assert done.stderr == f"error: {message} (see --help)\n"
    assert done.stdout == ""


def test_a_bad_directory_is_one_line_and_exit_status_2(a_file: Path) -> None:
    for target, message in [(a_file, f"{str(a_file)!r} is not a directory"),
                            (a_file / "sub", f"cannot create {str(a_file / 'sub')!r}: {str(a_file)!r} is not a "
                                             f"directory")]:
        done = run_demo("--dir", str(target))
        assert (done.returncode, done.stderr) == (2, f"error: argument --dir: {message} (see --help)\n")


def test_every_option_in_help_has_a_bad_input_case() -> None:
    done = run_demo("--help")
    assert done.returncode == 0
    options = set(re.findall(r"(--[a-z][a-z-]+)", done.stdout)) - {"--help"}
    tested = {args[0].split("=")[0] for args, _ in BAD if args[0] != "--bogus"} | {"--dir"}
    assert options == tested


def test_a_small_inline_run_succeeds_and_a_directory_of_another_job_is_refused(tmp_path: Path) -> None:
    done = run_demo("--executor", "inline", "--events", "3000", "--rate", "100000", "--batch-rows", "1000",
                    "--batch-every", "0.2", "--shards", "1", "--top", "2", "--dir", str(tmp_path / "data"))
    assert done.returncode == 0, done.stderr
    assert "summary per advertiser" in done.stdout and done.stderr == ""
    import pyarrow as pa

    from engine.lambda_arch.log import MasterLog
    from jobs.live_wordcount import LINES

    with MasterLog(tmp_path / "words", LINES) as log:
        log.ingest(pa.table({"line": ["a line of words"]}))
    done = run_demo("--executor", "inline", "--events", "10", "--dir", str(tmp_path / "words"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: master log ") and "the event contract says" in done.stderr
