"""``python -m jobs.adtech``: the live demo runs, prints the queries, and --dir continues."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.adtech import main

pytestmark = pytest.mark.integration


def test_demo_runs_twice_on_one_directory_and_continues(ray_runtime: object, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--events", "6000", "--rate", "6000", "--dir", str(tmp_path), "--batch-every", "0.5",
                 "--batch-rows", "1000", "--top", "3"]
    assert main(arguments) == 0
    first = capsys.readouterr().out
    assert "0 events stored" in first and "summary per advertiser" in first
    assert "active viewers 5m" in first and "ads shown 24h" in first and "fresh p50/p99" in first
    assert main(arguments) == 0
    second = capsys.readouterr().out
    stored_before = int(second.split(" events stored")[0].split(": ")[-1].replace(",", ""))
    assert stored_before > 5_000
    final_w = int(second.split("summary per advertiser (batch view W=")[1].split(";")[0].replace(",", ""))
    assert final_w > stored_before + 5_000  # the second run's events are new, not re-sends


def test_demo_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--rate", "0"])
    assert "--rate" in capsys.readouterr().err
