"""``python -m bench bad_input``: the catalog of bad-input cases, each run as a user feeds it.

Every case (bench/bad_input_api.py: MapReduce, pipeline, Lambda/ad-tech and
``engine.count_words`` through the public API on the inline executor; bench/bad_input_cli.py:
``python -m jobs.wordcount``, ``python -m jobs.adtech`` and ``python -m bench`` as
subprocesses) is executed, and what the user actually gets is recorded: the exact error
line, ``row rejected: <reason>`` / ``dead letter: <reason>``, or ``handled: ...`` when the
right outcome is a correct result.  Each case checks that the outcome is one clear line
(for a command line: no traceback on stderr, exit status 1 or 2), that it is not a silent
pass, and that nothing already written was lost.  Cases that need a Ray cluster are
skipped unless ``--with-ray`` is given, and the output says so.

Writes ``bad_input.json`` and ``bad_input.md`` (one table row per case: case, how it is
fed, what the user gets, exit status, nothing lost, the test that covers it).  Exits 1
naming every case that produced a traceback, no error, a wrong result or lost data.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

RESULTS = Path(__file__).resolve().parent / "results"
SKIPPED = "skipped: needs a Ray cluster (run with --with-ray)"


@dataclass
class Outcome:
    """What a user got from one case: ``gets`` (one line), the CLI exit status, whether
    what was already written survived (``kept``: "yes", "n/a" or "NO: ..."), and the
    problems found (empty when the case behaved: one clear line, no loss)."""

    gets: str
    status: int | None = None
    kept: str = "n/a"
    problems: list[str] = field(default_factory=list)

    def lost(self, what: str) -> "Outcome":
        """Record that ``what`` (written before the bad input) did not survive it."""
        self.kept = f"NO: {what}"
        self.problems.append(f"lost {what}")
        return self

    def check_kept(self, intact: bool, what: str) -> "Outcome":
        """``kept`` is "yes" when ``intact``, else ``what`` is recorded as lost."""
        if intact:
            self.kept = "yes"
            return self
        return self.lost(what)


@dataclass(frozen=True)
class Case:
    """One bad input: its name, how it is fed, the function that feeds it (given a fresh
    scratch directory), the test covering it ("file::test" or "not tested"), and whether
    it needs a Ray cluster (``ray``) or is a subprocess (``cli``)."""

    name: str
    fed: str
    run: Callable[[Path], Outcome]
    test: str
    ray: bool = False
    cli: bool = False


def first_line(text: str) -> str:
    """The first non-empty line of ``text`` (empty string if none)."""
    return next((line for line in text.strip().splitlines() if line.strip()), "")


def raised(call: Callable[[], object]) -> Outcome:
    """Call ``call`` expecting an error: ``Type: message`` if it raised one, with a problem
    when the message is empty, spans several lines or carries a traceback; "no error"
    (a problem) if it returned."""
    try:
        call()
    except Exception as error:  # the very error a user's code would catch
        text = str(error).strip()
        lines = text.splitlines()
        outcome = Outcome(gets=f"{type(error).__name__}: {lines[0] if lines else ''}")
        if not lines:
            outcome.problems.append("empty error message")
        elif len(lines) > 1:
            outcome.problems.append(f"message spans {len(lines)} lines")
        if "Traceback" in text:
            outcome.problems.append("traceback in the message")
        if type(error).__name__ == "ResultTimeoutError":
            outcome.problems.append("hung: the result never came")
        return outcome
    return Outcome(gets="no error", problems=["no error: the bad input passed silently"])


def handled(gets: str, correct: bool, wrong: str) -> Outcome:
    """A case whose right outcome is a correct result: ``gets`` if ``correct``, else a
    problem naming what was ``wrong``."""
    return Outcome(gets=f"handled: {gets}" if correct else f"wrong result: {wrong}",
                   problems=[] if correct else [f"wrong result: {wrong}"])


def run_case(case: Case, scratch: Path) -> dict:
    """Run one case in a fresh directory under ``scratch``; its catalog row (a dict)."""
    directory = Path(tempfile.mkdtemp(prefix="case-", dir=scratch))
    started = time.perf_counter()
    try:
        outcome = case.run(directory)
    except Exception as error:  # a case that escapes is a finding, not a crash of the suite
        outcome = Outcome(gets=f"unexpected {type(error).__name__}: {first_line(str(error))}",
                          problems=[f"escaped the case: {type(error).__name__}: {first_line(str(error))}"])
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    def shown(text: str) -> str:  # the scratch directory's random name is noise in the catalog
        return text.replace(str(directory), "<dir>")

    return {"case": case.name, "fed": case.fed, "gets": shown(outcome.gets), "exit_status": outcome.status,
            "nothing_lost": shown(outcome.kept), "test": case.test, "problems": [shown(p) for p in outcome.problems],
            "seconds": round(time.perf_counter() - started, 2), "skipped": False}


def skipped_row(case: Case) -> dict:
    """The catalog row of a case not run (it needs Ray and ``--with-ray`` was not given)."""
    return {"case": case.name, "fed": case.fed, "gets": SKIPPED, "exit_status": None, "nothing_lost": "n/a",
            "test": case.test, "problems": [], "seconds": 0.0, "skipped": True}


def all_cases() -> list[Case]:
    """Every case of the catalog, API cases first."""
    from bench.bad_input_api import API_CASES
    from bench.bad_input_cli import CLI_CASES

    return [*API_CASES, *CLI_CASES]


def run_catalog(cases: list[Case], with_ray: bool, scratch: Path, jobs: int = 1) -> list[dict]:
    """Run ``cases``: subprocess cases on ``jobs`` threads while the in-process ones run
    one after another here, then (with ``with_ray``) the Ray cases; rows in catalog order."""
    rows: dict[str, dict] = {}
    cli = [case for case in cases if case.cli and not case.ray]
    local = [case for case in cases if not case.cli and not case.ray]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {case.name: pool.submit(run_case, case, scratch) for case in cli}
        for case in local:
            rows[case.name] = run_case(case, scratch)
        for name, future in futures.items():
            rows[name] = future.result()
    for case in (case for case in cases if case.ray):
        rows[case.name] = run_case(case, scratch) if with_ray else skipped_row(case)
    return [rows[case.name] for case in cases]


def _cell(value: object) -> str:
    text = "—" if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[dict], seconds: float) -> str:
    """The catalog as a Markdown table plus a one-line summary."""
    ran = [row for row in rows if not row["skipped"]]
    failed = [row for row in ran if row["problems"]]
    lines = ["# Bad-input catalog (`python -m bench bad_input`)", "",
             f"{len(rows)} cases: {len(ran)} run, {len(rows) - len(ran)} skipped (need Ray: `--with-ray`), "
             f"{len(failed)} failing; {seconds:.1f} s.", "",
             "| case | how it is fed | what the user gets | exit | nothing lost | covered by |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        gets = row["gets"] + (f" **FAILING: {'; '.join(row['problems'])}**" if row["problems"] else "")
        lines.append("| " + " | ".join(_cell(v) for v in (row["case"], row["fed"], gets, row["exit_status"],
                                                          row["nothing_lost"], row["test"])) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The suite's options."""
    parser = argparse.ArgumentParser(prog="python -m bench bad_input", description=__doc__.split("\n\n")[0])
    parser.add_argument("--with-ray", action="store_true",
                        help="also run the cases that need a Ray cluster (an embedded one is started)")
    parser.add_argument("--only", default="", metavar="TEXT", help="run only the cases whose name contains TEXT")
    parser.add_argument("--jobs", type=int, default=1, help="command-line cases run at once (default 1)")
    parser.add_argument("--out", default=str(RESULTS), help=f"results directory (default {RESULTS})")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    return args


def main(argv: list[str]) -> int:
    """Run the catalog, write the JSON and Markdown, exit 1 naming every failing case."""
    args = parse_args(argv)
    cases = [case for case in all_cases() if args.only in case.name]
    if not cases:
        print(f"error: no case name contains {args.only!r}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-bad-input-"))
    try:
        rows = run_catalog(cases, args.with_ray, scratch, args.jobs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - started
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from engine.common.atomic_files import write_bytes_atomically, write_json_atomically

    failed = [row for row in rows if row["problems"]]
    summary = {"cases": len(rows), "run": sum(not row["skipped"] for row in rows),
               "skipped": sum(row["skipped"] for row in rows), "failing": [row["case"] for row in failed],
               "seconds": round(seconds, 1), "with_ray": args.with_ray}
    write_json_atomically(str(out / "bad_input.json"), {"summary": summary, "cases": rows})
    write_bytes_atomically(str(out / "bad_input.md"), markdown(rows, seconds).encode())
    for row in rows:
        mark = "SKIP" if row["skipped"] else ("FAIL" if row["problems"] else "ok  ")
        print(f"{mark} {row['case']}: {row['gets']}")
    print(f"\n{summary['cases']} cases, {summary['run']} run, {summary['skipped']} skipped (need --with-ray), "
          f"{len(failed)} failing, {seconds:.1f} s; wrote {out / 'bad_input.json'} and {out / 'bad_input.md'}")
    for row in failed:
        print(f"FAILING: {row['case']}: {'; '.join(row['problems'])}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
