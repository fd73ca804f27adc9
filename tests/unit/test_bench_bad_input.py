"""``python -m bench bad_input``: a few catalog cases run through the suite's case runner
record the very messages the existing bad-input tests expect; a silent pass, a case that
escapes and a traceback are reported as failing; every test the catalog cites exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import bad_input
from bench.bad_input import Case, Outcome, raised, run_case
from bench.bad_input_cli import message_lines

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CASES = {case.name: case for case in bad_input.all_cases()}


@pytest.mark.parametrize("name, expected, kept", [
    ("mapreduce: invalid UTF-8 lines over the bad-record limit",  # as test_bad_input_mapreduce.py expects
     r"TooManyBadRecordsError: 2 of 10 records were bad \(20\.0%\), above the allowed 10\.0%.*", "n/a"),
    ("mapreduce: input directory with no files", r"InputNotFoundError: input directory holds no files: <dir>/empty",
     "n/a"),
    ("pipeline: ParquetSink pointed at a file", r"PipelineFailedError: sink ParquetSink failed to open: "
     r"OutputExistsError: output path exists and is not a directory: <dir>/file", "yes"),
    ("lambda: an inf cost", r"row rejected: negative or non-finite cost", "yes"),
    ("adtech CLI: --seed -3", r"error: argument --seed: must be an integer from 0 to 4,294,967,295, got -3 "
                              r"\(see --help\)", "n/a"),
])
def test_catalog_cases_record_the_messages_the_tests_expect(tmp_path: Path, name: str, expected: str,
                                                            kept: str) -> None:
    row = run_case(CASES[name], tmp_path)
    assert re.fullmatch(expected, row["gets"]), row["gets"]
    assert row["problems"] == [] and row["nothing_lost"] == kept
    assert row["exit_status"] == (2 if CASES[name].cli else None)
    assert list(tmp_path.iterdir()) == []  # the case's scratch directory is removed


def test_a_silent_pass_an_escape_and_a_traceback_are_failures(tmp_path: Path) -> None:
    def escapes(directory: Path) -> Outcome:
        raise KeyError("boom")

    silent = run_case(Case("silent", "fed", lambda d: raised(lambda: None), "not tested"), tmp_path)
    assert silent["gets"] == "no error" and silent["problems"] == ["no error: the bad input passed silently"]
    escaped = run_case(Case("escapes", "fed", escapes, "not tested"), tmp_path)
    assert escaped["problems"] == ["escaped the case: KeyError: 'boom'"]
    def fails_in_two_lines() -> None:
        raise ValueError("one\nTraceback (most recent call last):")

    two_lines = raised(fails_in_two_lines)
    assert two_lines.gets == "ValueError: one"
    assert two_lines.problems == ["message spans 2 lines", "traceback in the message"]
    assert message_lines("usage: prog [-h]\n       [--x X]\nprog: error: bad\n") == ["prog: error: bad"]
    table = bad_input.markdown([silent, bad_input.skipped_row(Case("r", "f", lambda d: Outcome(""), "t", ray=True))],
                               1.0)
    assert "2 cases: 1 run, 1 skipped" in table and "1 failing" in table and "**FAILING: no error" in table


def test_every_cited_test_exists() -> None:
    assert len(CASES) == len(bad_input.all_cases())  # names are unique: rows are keyed by them
    for case in CASES.values():
        if case.test == "not tested":
            continue
        path, _, test = case.test.partition("::")
        function = test.split("[", 1)[0]
        assert re.search(rf"^def {function}\(", (ROOT / path).read_text(), re.M), case.test
