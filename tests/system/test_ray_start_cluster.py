"""The example job on a cluster the user started with `ray start --head`, set up as the
README's security section says (a private token file first, token mode, the dashboard on
127.0.0.1): joined with `--address auto`, and run unchanged as a `ray job submit` job.

One head serves both tests: starting and stopping one costs about 40 s on 2 cores."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pyarrow.dataset as pads
import pytest

from tests.oracles import table_to_dict, wordcount_oracle
from tests.system import job_server
from tests.system.ray_head import free_port, ray_head

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


class Head:
    """The running head: its environment (HOME with the token file) and dashboard port."""

    def __init__(self, env: dict[str, str], dashboard: int) -> None:
        self.env, self.dashboard = env, dashboard


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Head]:
    base = tmp_path_factory.mktemp("ray-start")
    home = base / "home"
    home.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(home), "RAY_AUTH_MODE": "token"}
    env.pop("RAY_AUTH_TOKEN", None)  # the shared test runtime's token is not this cluster's
    env.pop("RAY_ADDRESS", None)
    # A private HOME is for the token file only: the kernels compiled by the rest of the session
    # stay where they are (a fresh HOME would make this cluster's workers compile them again).
    env["XDG_CACHE_HOME"] = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    extra = job_server.wait()
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (extra, env.get("PYTHONPATH", "")) if p)
    # The README's safe way: a private token file first, then token mode.
    subprocess.run("umask 077 && ray get-auth-token --generate >/dev/null && chmod 600 ~/.ray/auth_token",
                   shell=True, check=True, env=env, timeout=120)
    assert stat.S_IMODE((home / ".ray" / "auth_token").stat().st_mode) == 0o600
    # Ray's default temp dir, as a user's `ray start` has it: `--address auto` finds the head
    # through /tmp/ray/ray_current_cluster there (with --temp-dir it is not written there, and
    # Ray falls back to whichever cluster it detects, e.g. the test session's own).
    dashboard, port = free_port(), free_port()
    args = ["--num-cpus", "2", "--node-ip-address", "127.0.0.1", "--port", str(port),
            "--include-dashboard=true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
            "--dashboard-agent-listen-port", str(free_port()), "--ray-client-server-port", str(free_port()),
            "--disable-usage-stats"]
    try:
        with ray_head(args, env):
            yield Head(env, dashboard)
    finally:  # the head was killed: its address must not be left for a later `auto`
        current = Path("/tmp/ray/ray_current_cluster")
        if current.exists() and current.read_text().strip().endswith(f":{port}"):
            current.unlink(missing_ok=True)


def test_address_auto_joins_the_cluster_started_with_ray_start(head: Head, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("to be or not to be\n")
    done = subprocess.run([sys.executable, "-m", "jobs.wordcount", str(tmp_path / "in.txt"), "--output",
                           str(tmp_path / "out"), "--address", "auto", "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env=head.env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "existing Ray cluster, 2 CPUs" in done.stdout
    assert re.search(r"^\s+be\s+2$", done.stdout, re.M) and re.search(r"^\s+to\s+2$", done.stdout, re.M)
    result = pads.dataset(str(tmp_path / "out"), format="parquet").to_table()
    assert table_to_dict(result) == wordcount_oracle([tmp_path / "in.txt"])


def test_the_wordcount_job_runs_unchanged_under_ray_job_submit(head: Head, tmp_path: Path) -> None:
    words = tmp_path / "in.txt"
    words.write_text("to be or not to be\nthat is the question\n\u00e9t\u00e9 to\n", encoding="utf-8")
    # Ray uploads the working directory (at most 100 MiB, skipping what .gitignore lists); a
    # virtualenv made inside the checkout under a name .gitignore does not list would not fit.
    venvs = sorted(f"{path.parent.name}/" for path in ROOT.glob("*/pyvenv.cfg"))
    done = subprocess.run(
        ["ray", "job", "submit", "--address", f"http://127.0.0.1:{head.dashboard}", "--working-dir", str(ROOT),
         "--runtime-env-json", json.dumps({"excludes": venvs}), "--", sys.executable, "-m", "jobs.wordcount", str(words), "--output", str(tmp_path / "out"),
         "--no-progress", "--top", "3"],
        env=head.env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert re.search(r"Job 'raysubmit_\w+' succeeded", done.stdout + done.stderr), done.stdout[-2000:]
    assert "(existing Ray cluster, 2 CPUs)" in done.stdout  # it joined the cluster, started none
    assert re.search(r"^\s+to\s+3$", done.stdout, re.M)
    result = pads.dataset(str(tmp_path / "out"), format="parquet").to_table()
    assert table_to_dict(result) == wordcount_oracle([words])


def test_what_the_engine_leaves_on_a_joined_cluster_is_listed_and_stopped(head: Head) -> None:
    # Runs after the two jobs above (same head): their supervisor, master and workers stay.
    def engine_cli(command: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", command, "--address", "auto"], capture_output=True,
                              text=True, cwd=ROOT, timeout=120, env=head.env)

    listed = engine_cli("what")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert re.search(r"supervisor engine-mapreduce-pool; master processes: 1; free workers: \d+", listed.stdout)
    stopped = engine_cli("stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr[-2000:]
    after = engine_cli("what")
    assert after.returncode == 0 and after.stdout.strip() == "the engine keeps nothing on this cluster", after
