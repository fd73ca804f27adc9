"""``python -m bench faults`` as the lead runs it, on its cheapest pattern: a smoke run
(``--quick``) that must kill a shard host, exit 0 and report only exact rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


def test_quick_fault_run_reports_exact_rows_and_the_kill(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}  # its own embedded cluster
    done = subprocess.run([sys.executable, "-m", "bench", "faults", "--quick", "--patterns", "scatter-gather",
                           "--out", str(tmp_path), "--data", str(tmp_path / "data")],
                          cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "faults.json").read_text())
    rows = report["rows"]
    assert [(row["pattern"], row["scenario"]) for row in rows] == [
        ("scatter-gather", "undisturbed"), ("scatter-gather", "shard host killed at 25% of queries")]
    assert all(row["exact"] is True for row in rows), rows
    assert rows[0]["ratio_to_undisturbed"] == 1.0 and rows[1]["baseline"] == "undisturbed"
    killed = rows[1]["runs"][0]
    assert "SIGKILLed" in killed["kill"] and killed["host_restarts"] == 1
    assert killed["partial"] >= 1 and killed["failed"] == 0
    assert killed["complete"] + killed["partial"] == killed["queries"] == 150
    assert killed["exact_after_recovery"] is True
    assert len(report["loadavg_before"]) == len(report["loadavg_after"]) == 3
    try:  # the chart needs the bench extra (matplotlib); without it the run says so
        import matplotlib  # noqa: F401
    except ImportError:
        assert "note: faults.png not drawn: matplotlib is not installed" in done.stderr
    else:
        assert (tmp_path / "faults.png").stat().st_size > 0
