"""The embedded cluster's token: private, and the only way in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
JOIN = "import ray, sys; ray.init(address=sys.argv[1]); print('JOINED', ray.cluster_resources().get('CPU'))"


def _gcs_address() -> str:
    import ray

    return ray._private.worker.global_worker.node.gcs_address


def _join(gcs: str, token: str | None, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_TOKEN"}
    env["HOME"] = str(home)  # no ~/.ray/auth_token to fall back on
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    return subprocess.run([sys.executable, "-c", JOIN, gcs], capture_output=True, text=True, timeout=120,
                          env=env, cwd=ROOT)


def test_a_process_without_the_token_is_refused_and_one_with_it_joins(ray_runtime: object, tmp_path: Path) -> None:
    token = os.environ.get("RAY_AUTH_TOKEN")
    assert os.environ.get("RAY_AUTH_MODE") == "token" and token and len(token) == 64
    gcs = _gcs_address()
    wrong = _join(gcs, "0" * 64, tmp_path)
    assert wrong.returncode != 0 and "Authentication token is missing or incorrect" in wrong.stderr
    missing = _join(gcs, None, tmp_path)
    assert missing.returncode != 0 and "JOINED" not in missing.stdout
    right = _join(gcs, token, tmp_path)
    assert right.returncode == 0 and "JOINED" in right.stdout, right.stderr[-1500:]
