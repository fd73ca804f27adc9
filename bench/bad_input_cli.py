"""Bad-input cases fed to the command lines as subprocesses, as a user types them:
``python -m jobs.wordcount`` (every option its ``--help`` lists), ``python -m jobs.adtech``
(every option, plus ``--dir`` naming a regular file) and ``python -m bench``.

What the user gets is the last line on stderr once argparse's usage block is set aside;
a case fails on a traceback, an exit status other than 1 or 2, more than one message
line, or a hang.  Options the case does not test are given safe values (``--local``, a
tiny input, ``--executor inline``), so a bad value that slipped through would run a small
job instead of the default 64 MiB corpus or a Ray cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from bench.bad_input import Case, Outcome

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120.0
WORDCOUNT = "tests/system/test_wordcount_cli.py::"
ADTECH = "tests/system/test_adtech_cli.py::"


def message_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that say something, without argparse's usage block."""
    lines, in_usage = [], False
    for line in stderr.splitlines():
        if line.startswith("usage:"):
            in_usage = True
            continue
        if in_usage and line.startswith(" "):
            continue
        in_usage = False
        if line.strip():
            lines.append(line)
    return lines


def cli(module: str, *args: str, timeout_s: float = TIMEOUT_S) -> Outcome:
    """Run ``python -m module args`` from the project root; the outcome a user sees."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT,
                              timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return Outcome(gets=f"hung: no exit within {timeout_s:.0f} s",
                       problems=[f"hung (killed after {timeout_s:.0f} s)"])
    lines = message_lines(done.stderr)
    outcome = Outcome(gets=lines[-1] if lines else "(nothing on stderr)", status=done.returncode)
    if "Traceback" in done.stderr:
        outcome.problems.append("traceback on stderr")
    if done.returncode not in (1, 2):
        outcome.problems.append(f"exit status {done.returncode}, not 1 or 2"
                                + (": no error" if done.returncode == 0 else ""))
    if len(lines) != 1:
        outcome.problems.append(f"{len(lines)} message lines on stderr")
    return outcome


def _wordcount_case(name: str, args: list[str], test: str, with_input: bool = True) -> Case:
    def run(directory: Path) -> Outcome:
        tiny = directory / "in.txt"
        tiny.write_text("a b a\n")
        base = [str(tiny), "--local", "--output", str(directory / "out")] if with_input else ["--local"]
        return cli("jobs.wordcount", *base, *args)

    fed = f"CLI: python -m jobs.wordcount {'IN --output OUT ' if with_input else ''}--local {' '.join(args)}"
    return Case(name, fed, run, test, cli=True)


def _existing_output(directory: Path) -> Outcome:
    """A second run into the --output of a finished one, without --overwrite."""
    import pyarrow.dataset as ds

    (directory / "in.txt").write_text("b a b\n")
    out = directory / "out"
    first = subprocess.run([sys.executable, "-m", "jobs.wordcount", str(directory / "in.txt"), "--output", str(out),
                            "--local"], capture_output=True, text=True, cwd=ROOT, timeout=TIMEOUT_S)
    if first.returncode != 0:
        return Outcome(gets="setup failed", problems=[f"the first run failed: {first.stderr.strip()[-200:]}"])
    outcome = cli("jobs.wordcount", str(directory / "in.txt"), "--output", str(out), "--local")
    table = ds.dataset(str(out), format="parquet").to_table()
    kept = dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist())) == {"a": 1, "b": 2}
    return outcome.check_kept(kept, "the first run's result")


def _output_is_a_file(directory: Path) -> Outcome:
    (directory / "in.txt").write_text("a b\n")
    (directory / "out").write_text("keep me")
    outcome = cli("jobs.wordcount", str(directory / "in.txt"), "--output", str(directory / "out"), "--local")
    return outcome.check_kept((directory / "out").read_text() == "keep me", "the file named by --output")


def _input_mostly_invalid(directory: Path) -> Outcome:
    (directory / "in.txt").write_bytes(b"ok\n" + b"\xff\xfe\n" * 9)
    return cli("jobs.wordcount", str(directory / "in.txt"), "--output", str(directory / "out"), "--local")


def _tiny(directory: Path) -> list[str]:
    (directory / "in.txt").write_text("a b a\n")
    return [str(directory / "in.txt"), "--output", str(directory / "out")]


def _empty_directory(directory: Path) -> Outcome:
    (directory / "empty").mkdir()
    return cli("jobs.wordcount", str(directory / "empty"), "--local")


WORDCOUNT_CASES = [
    _wordcount_case("wordcount CLI: missing input", ["/definitely/not/here.txt"],
                    WORDCOUNT + "test_cli_errors_are_one_line_without_traceback", with_input=False),
    Case("wordcount CLI: input directory with no files", "CLI: python -m jobs.wordcount EMPTY_DIR --local",
         _empty_directory, WORDCOUNT + "test_cli_names_an_input_directory_without_files", cli=True),
    *[_wordcount_case(f"wordcount CLI: {' '.join(args)}", args, WORDCOUNT + test if test else "not tested")
      for args, test in [
        (["--reducers", "0"], "test_cli_errors_are_one_line_without_traceback"),
        (["--reducers", "two"], ""),
        (["--workers", "0"], "test_cli_errors_are_one_line_without_traceback"),
        (["--split-size", "lots"], "test_cli_errors_are_one_line_without_traceback"),
        (["--split-size", "0"], ""),
        (["--max-bad-fraction", "1.5"], "test_cli_errors_are_one_line_without_traceback"),
        (["--max-bad-fraction", "nan"], "test_cli_errors_are_one_line_without_traceback"),
        (["--max-bad-fraction", "some"], ""),
        (["--top", "-1"], ""),
        (["--bogus"], ""),
    ]],
    Case("wordcount CLI: --output holding a result", "CLI: python -m jobs.wordcount IN --output DONE --local "
         "(no --overwrite)", _existing_output, WORDCOUNT + "test_existing_output_is_refused_then_overwritten",
         cli=True),
    Case("wordcount CLI: --output naming a regular file", "CLI: python -m jobs.wordcount IN --output FILE --local",
         _output_is_a_file, "not tested", cli=True),
    Case("wordcount CLI: input of mostly invalid UTF-8", "CLI: python -m jobs.wordcount IN --local (9 of 10 lines "
         "invalid)", _input_mostly_invalid, "not tested", cli=True),
    Case("wordcount CLI: --address of no cluster", "CLI: python -m jobs.wordcount IN --address 127.0.0.1:1",
         lambda d: cli("jobs.wordcount", *_tiny(d), "--address", "127.0.0.1:1"),
         "tests/system/test_wordcount_cli.py::test_an_address_where_no_cluster_answers_fails_at_once_in_one_line",
         cli=True),
]

ADTECH_OPTIONS = [
    ["--events", "-1"], ["--events", "100000000000"], ["--events", "lots"], ["--rate", "0"], ["--rate", "-5"],
    ["--rate", "nan"], ["--rate", "inf"], ["--rate", "fast"], ["--batch-every", "0"], ["--batch-every", "nan"],
    ["--batch-every", "1e9"], ["--batch-rows", "-5"], ["--batch-rows", "0"], ["--shards", "0"],
    ["--shards", "100000"], ["--seed", "-3"], ["--seed", "4294967296"], ["--top", "-1"], ["--executor", "spark"],
    ["--ui=yes"], ["--bogus"], ["--events"],
]


def _adtech_case(args: list[str]) -> Case:
    tested = args[0].split("=")[0]

    def run(directory: Path) -> Outcome:
        safe = {"--executor": "inline", "--events": "100", "--rate": "1000000", "--batch-every": "0.2",
                "--shards": "1", "--dir": str(directory / "data")}
        base = [part for option, value in safe.items() if option != tested for part in (option, value)]
        return cli("jobs.adtech", *base, *args)

    return Case(f"adtech CLI: {' '.join(args)}", f"CLI: python -m jobs.adtech {' '.join(args)}", run,
                ADTECH + f"test_a_bad_option_is_one_line_and_exit_status_2[{' '.join(args)}]", cli=True)


def _adtech_dir(sub: bool) -> Callable[[Path], Outcome]:
    def run(directory: Path) -> Outcome:
        a_file = directory / "events.txt"
        a_file.write_text("not a directory\n")
        target = a_file / "sub" if sub else a_file
        outcome = cli("jobs.adtech", "--executor", "inline", "--events", "100", "--dir", str(target))
        return outcome.check_kept(a_file.read_text() == "not a directory\n", "the file named by --dir")
    return run


OTHER_CASES = [
    Case("adtech CLI: --dir naming a regular file", "CLI: python -m jobs.adtech --dir FILE", _adtech_dir(False),
         ADTECH + "test_a_bad_directory_is_one_line_and_exit_status_2", cli=True),
    Case("adtech CLI: --dir under a regular file", "CLI: python -m jobs.adtech --dir FILE/sub", _adtech_dir(True),
         ADTECH + "test_a_bad_directory_is_one_line_and_exit_status_2", cli=True),
    Case("bench CLI: faults --patterns nope", "CLI: python -m bench faults --patterns nope",
         lambda d: cli("bench", "faults", "--patterns", "nope"),
         "tests/unit/test_bench_faults_report.py::test_an_unknown_pattern_is_refused_in_one_line", cli=True),
    Case("bench CLI: an unknown suite", "CLI: python -m bench nope", lambda d: cli("bench", "nope"), "not tested",
         cli=True),
]

CLI_CASES = [*WORDCOUNT_CASES, *[_adtech_case(args) for args in ADTECH_OPTIONS], *OTHER_CASES]
