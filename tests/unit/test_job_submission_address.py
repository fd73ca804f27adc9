"""Which cluster ``engine.connect()`` joins in the driver of a `ray job submit` job."""

from __future__ import annotations

import pytest

from engine.cluster import submitted_job_address

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("env, expected", [
    ({"RAY_JOB_CONFIG_JSON_ENV_VAR": '{"runtime_env": {}}', "RAY_ADDRESS": "127.0.0.1:6380"}, "127.0.0.1:6380"),
    ({"RAY_ADDRESS": "127.0.0.1:6380"}, None),  # a RAY_ADDRESS alone never redirects the embedded cluster
    ({"RAY_JOB_CONFIG_JSON_ENV_VAR": '{"runtime_env": {}}'}, None),
    ({}, None),
])
def test_only_a_submitted_job_driver_joins_its_cluster(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                       expected: str | None) -> None:
    for name in ("RAY_JOB_CONFIG_JSON_ENV_VAR", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert submitted_job_address() == expected
