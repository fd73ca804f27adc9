"""The word-count example, unchanged, as a `ray job submit` job on a `ray start --head`
cluster (dashboard on 127.0.0.1 only, token authentication with a private token)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from tests.oracles import table_to_dict, wordcount_oracle
from tests.system.ray_head import free_port, ray_head

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


def test_the_wordcount_job_runs_unchanged_under_ray_job_submit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    # The token reaches the cluster's processes and the job client through their
    # environment only (readable by this user alone): no token file anywhere.
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="rjs-", dir="/tmp")  # short: Ray's socket paths live under it
    os.chmod(temp_dir, 0o700)
    dashboard = free_port()
    args = ["--num-cpus", "2", "--node-ip-address", "127.0.0.1", "--port", str(free_port()),
            "--include-dashboard=true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
            "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
            "--temp-dir", temp_dir, "--disable-usage-stats"]
    words = tmp_path / "in.txt"
    words.write_text("to be or not to be\nthat is the question\n\u00e9t\u00e9 to\n", encoding="utf-8")
    try:
        with ray_head(args, env):
            done = subprocess.run(
                ["ray", "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--working-dir", str(ROOT),
                 "--", sys.executable, "-m", "jobs.wordcount", str(words), "--output", str(tmp_path / "out"),
                 "--no-progress", "--top", "3"],
                env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert re.search(r"Job 'raysubmit_\w+' succeeded", done.stdout + done.stderr), done.stdout[-2000:]
    assert "(existing Ray cluster, 2 CPUs)" in done.stdout  # it joined the cluster, started none
    assert re.search(r"^\s+to\s+3$", done.stdout, re.M)
    result = pads.dataset(str(tmp_path / "out"), format="parquet").to_table()
    assert table_to_dict(result) == wordcount_oracle([words])
