"""Test tiers and the one Ray runtime shared by the whole session.

- unit tests never start Ray (``_unit_tier_never_starts_ray`` fails any that tries);
- integration tests take the ``ray_runtime`` fixture, which starts one embedded cluster
  per session (start-up costs seconds, so it is shared);
- fault tests start clusters of their own and must not run while the shared one is up;
  they take the ``isolated_ray`` fixture, which shuts the shared runtime down first.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("RAY_DEDUP_LOGS", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def _start_job_server_install(session: pytest.Session) -> None:
    """Start installing Ray's job-server packages in the background when the ``ray start``
    tests are selected (they are the only ones that need them; see tests/system/job_server.py)."""
    if any(item.nodeid.startswith("tests/system/test_ray_start_cluster.py") for item in session.items):
        from tests.system import job_server

        job_server.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.system import job_server

    job_server.clean_up()


@pytest.fixture(scope="session")
def _shared_ray() -> Iterator[None]:
    import ray

    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def ray_runtime(_shared_ray: None) -> object:
    """One embedded 2-CPU Ray cluster shared by the integration tests of the session
    (started on first use; started again only if a fault test had to stop it)."""
    from engine.cluster import connect

    return connect(num_cpus=2)


@pytest.fixture(params=["inline", "ray"])
def executor(request: pytest.FixtureRequest) -> str:
    """Run a pattern test once per executor: "inline" (no Ray) and "ray" (the shared
    runtime).  Tests compare both with an independent plain-Python oracle."""
    if request.param == "ray":
        request.getfixturevalue("ray_runtime")
    return request.param


@pytest.fixture
def isolated_ray() -> Iterator[None]:
    """For fault tests that build their own cluster: no shared runtime while they run."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(autouse=True)
def _unit_tier_never_starts_ray(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The guard of the unit tier: a unit test that starts Ray (``ray.init``, or an actor
    or task that would start it implicitly) fails at once."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a unit test tried to start Ray; unit tests never start Ray (mark it integration)")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr("ray._private.worker.init", refuse)
    yield
    assert not ray.is_initialized(), "a unit test left Ray running"


_TIER_ORDER = {"unit": 0, "integration": 1, "system": 2, "fault": 3}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run tiers in order (unit, integration, system, fault): fault tests stop the shared
    runtime, so they go last and the shared cluster starts once."""
    def tier(item: pytest.Item) -> int:
        return min((_TIER_ORDER[m.name] for m in item.iter_markers() if m.name in _TIER_ORDER), default=1)

    items.sort(key=tier)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Ship functions defined in test modules to Ray workers by value, and start the
    background install the ``ray start`` tests need.

    Worker processes cannot import test modules by the names pytest gives them, so jobs
    whose map/reduce functions live in a test file would fail to deserialize there.
    """
    _start_job_server_install(session)
    try:
        import ray.cloudpickle as cloudpickle
    except ImportError:
        return
    for module in {item.module for item in session.items if getattr(item, "module", None) is not None}:
        if module.__name__ in sys.modules:
            cloudpickle.register_pickle_by_value(module)
