"""Losing the embedded cluster's node under a running pipeline: the driver notices within
seconds, restarts the cluster, runs the pipeline again with ``resume=True`` and says so in
one line; the sink ends with every row exactly once (a plain-Python oracle).

The driver (``tests.fault.node_loss_pipeline``) runs in a subprocess with an embedded
cluster of its own, so killing that cluster's GCS server cannot hurt the shared runtime.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.fault.test_embedded_node_loss import kill_gcs_and_wait

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 2_000  # tests.fault.node_loss_pipeline.TOTAL, restated: the oracle does not import the driver
LINE = ("embedded Ray cluster lost (GCS server died); restarted it and resumed pipeline double from its last "
        "committed sink batch")


def wait_for_parts(out: Path, at_least: int, driver: subprocess.Popen, timeout_s: float = 120.0) -> int:
    """Poll the sink directory until it holds ``at_least`` committed parts."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        parts = len(list(out.glob("part-*.parquet"))) if out.is_dir() else 0
        if parts >= at_least:
            return parts
        time.sleep(0.02)
    raise AssertionError(f"the pipeline committed fewer than {at_least} parts within {timeout_s}s")


def test_killing_the_gcs_server_mid_pipeline_restarts_the_cluster_and_resumes_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-m", "tests.fault.node_loss_pipeline", str(out)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        committed = wait_for_parts(out, at_least=3, driver=driver)
        assert committed < TOTAL // 100  # still running
    except BaseException:  # the wait failed: stop the driver
        driver.kill()
        driver.communicate()
        raise
    stdout, stderr = kill_gcs_and_wait(driver)
    assert driver.returncode == 0, stderr[-3000:]
    done = [line for line in stdout.splitlines() if line.startswith("done ")]
    assert len(done) == 1, (stdout[-2000:], stderr[-3000:])
    restarts, resumed = map(int, done[0].split()[1:])
    assert restarts == 1 and resumed >= 3, done[0]
    assert stderr.count("restarted it and") == 1, stderr[-3000:]
    assert LINE in stderr.splitlines(), stderr[-3000:]
    assert (out / "_SUCCESS").exists()
    table = pq.read_table(out)
    x = table["x"].to_pylist()
    assert sorted(x) == list(range(TOTAL))  # every row, none twice
    assert table["y"].to_pylist() == [2 * v for v in x]
