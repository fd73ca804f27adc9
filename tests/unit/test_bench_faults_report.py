"""The ``bench faults`` report with fake pattern modules (no Ray): rows, ratios, JSON, and
exit 1 naming each scenario whose results were not exact (or that raised)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

import bench.faults as faults
from bench.faults_common import scenario_row


def _fake(rows: list[dict] | None = None, error: Exception | None = None) -> types.ModuleType:
    module = types.ModuleType("fake_faults_pattern")

    def run(args: object) -> list[dict]:
        if error is not None:
            raise error
        return rows or []

    module.run = run  # type: ignore[attr-defined]
    return module


def _runs(*pairs: tuple[float, bool]) -> list[dict]:
    return [{"seconds": seconds, "exact": exact} for seconds, exact in pairs]


def test_scenario_row_takes_the_median_and_its_ratio_to_the_baseline() -> None:
    base = scenario_row("p", "undisturbed", _runs((2.0, True), (4.0, True), (3.0, True)), None, None)
    assert (base["seconds"], base["ratio_to_undisturbed"], base["exact"], base["baseline"]) == (3.0, 1.0, True, "undisturbed")
    row = scenario_row("p", "killed", _runs((6.0, True), (9.0, False), (7.5, True)), "undisturbed", 3.0)
    assert (row["seconds"], row["ratio_to_undisturbed"], row["exact"]) == (7.5, 2.5, False)


def test_a_run_that_is_not_exact_exits_1_naming_the_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    good = [scenario_row("good", "undisturbed", _runs((1.0, True)), None, None),
            scenario_row("good", "thing killed", _runs((2.0, True)), "undisturbed", 1.0)]
    bad = [scenario_row("bad", "undisturbed", _runs((1.0, True)), None, None),
           scenario_row("bad", "other thing killed", _runs((1.5, False)), "undisturbed", 1.0)]
    monkeypatch.setitem(sys.modules, "fake_good", _fake(good))
    monkeypatch.setitem(sys.modules, "fake_bad", _fake(bad))
    monkeypatch.setitem(sys.modules, "fake_broken", _fake(error=RuntimeError("no cluster\nmore")))
    monkeypatch.setattr(faults, "PATTERNS", {"good": "fake_good", "bad": "fake_bad", "broken": "fake_broken"})
    assert faults.main(["--out", str(tmp_path), "--in-process"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == ("error: results not exact in bad: other thing killed; "
                         "broken: (pattern did not finish)")
    report = json.loads((tmp_path / "faults.json").read_text())
    assert [(r["pattern"], r["scenario"], r["exact"], r["ratio_to_undisturbed"]) for r in report["rows"]] == [
        ("good", "undisturbed", True, 1.0), ("good", "thing killed", True, 2.0),
        ("bad", "undisturbed", True, 1.0), ("bad", "other thing killed", False, 1.5),
        ("broken", "(pattern did not finish)", False, None)]
    assert report["rows"][-1]["notes"] == "raised RuntimeError: no cluster"
    assert len(report["loadavg_before"]) == 3
    try:  # the chart needs the bench extra; without it the run says so and still reports
        import matplotlib  # noqa: F401
    except ImportError:
        assert lines[:-1] == ["note: faults.png not drawn: matplotlib is not installed (pip install '.[bench]')"]
    else:
        assert (tmp_path / "faults.png").stat().st_size > 0 and len(lines) == 1
    monkeypatch.setattr(faults, "chart", lambda rows, path: None)  # drawn above already
    assert faults.main(["--out", str(tmp_path), "--in-process", "--patterns", "good"]) == 0


def test_an_unknown_pattern_is_refused_in_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        faults.parse_args(["--patterns", "mapreduce,nope"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "error: unknown pattern nope; choose from mapreduce, pipeline, scatter-gather, lambda, multinode")
