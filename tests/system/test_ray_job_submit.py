"""The word-count example, unchanged, as a `ray job submit` job on a `ray start --head`
cluster (dashboard on 127.0.0.1 only, token authentication with a private token)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
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


def job_server_packages(directory: Path) -> str:
    """A PYTHONPATH entry holding what Ray's job server needs (Ray's ``default`` extra).

    They are installed here, for this test's cluster only, rather than in the test extra:
    installed in the environment they make every embedded cluster of the suite also start
    Ray's dashboard processes (two more ports on 0.0.0.0, and CPU on a 2-core machine)."""
    if importlib.util.find_spec("aiohttp") is not None and importlib.util.find_spec("aiohttp_cors") is not None:
        return ""
    requirements = [r.split(";")[0].strip() for r in importlib.metadata.requires("ray") or []
                    if 'extra == "default"' in r.replace("'", '"')]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--target", str(directory), *requirements], check=True, timeout=600)
    return str(directory)


def test_the_wordcount_job_runs_unchanged_under_ray_job_submit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    # The token reaches the cluster's processes and the job client through their
    # environment only (readable by this user alone): no token file anywhere.
    extra = job_server_packages(tmp_path / "job-server-packages")
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH", "")) if p)
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
