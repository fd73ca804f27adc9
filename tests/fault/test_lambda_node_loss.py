"""Losing the embedded cluster's node under a Lambda deployment on Ray: no call hangs; the
deployment restarts the cluster, reopens its layers from its directory and says so in one
line, then carries on; every acknowledged event is counted exactly once in the final
answer (a plain-Python oracle over the acknowledged events).

The driver (``tests.fault.node_loss_lambda``) runs in a subprocess with an embedded
cluster of its own, so killing that cluster's GCS server cannot hurt the shared runtime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.fault.test_embedded_node_loss import kill_gcs_and_wait

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
BATCHES, ROWS = 30, 20  # the driver's, restated: the oracle does not import it
LINE = "embedded Ray cluster lost (GCS server died); restarted it and reopened deployment {directory} from its " \
       "directory (every acknowledged event kept, views rebuilt)"


def oracle(acked: list[int]) -> dict[str, list[int]]:
    """Per key ``k<i mod 7>``: [sum of i, count] over the events of the acknowledged batches."""
    sums: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for index in acked:
        for i in range(index * ROWS, (index + 1) * ROWS):
            sums[f"k{i % 7}"][0] += i
            sums[f"k{i % 7}"][1] += 1
    return dict(sums)


def wait_for_acks(progress: Path, at_least: int, driver: subprocess.Popen, timeout_s: float = 120.0) -> int:
    """Poll the driver's progress file until ``at_least`` ingests were acknowledged."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        text = progress.read_text() if progress.exists() else ""
        if text and int(text) >= at_least:
            return int(text)
        time.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} ingests were acknowledged within {timeout_s}s")


def test_killing_the_gcs_server_under_a_lambda_deployment_reopens_it_and_loses_no_acknowledged_event(
        tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-m", "tests.fault.node_loss_lambda", str(tmp_path)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        acked_before = wait_for_acks(tmp_path / "progress", at_least=8, driver=driver)
        assert acked_before < BATCHES  # still ingesting
    except BaseException:  # the wait failed: stop the driver
        driver.kill()
        driver.communicate()
        raise
    stdout, stderr = kill_gcs_and_wait(driver)
    assert driver.returncode == 0, stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["raised"] == [], result["raised"]  # the embedded cluster is restarted: no call fails
    assert result["acked"] == list(range(BATCHES))
    assert result["restarts"] == 1
    assert result["speed_offset"] == BATCHES * ROWS  # every acknowledged event visible, none twice
    assert result["sums"] == oracle(result["acked"])
    assert stderr.count("restarted it and") == 1, stderr[-3000:]
    assert LINE.format(directory=tmp_path / "deployment") in stderr.splitlines(), stderr[-3000:]
