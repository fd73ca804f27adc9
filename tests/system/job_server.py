"""Ray's job-server packages (Ray's ``default`` extra) for the ``ray start`` system tests.

They are installed into a private directory for that test's cluster only, rather than in
the test extra: installed in the environment they would make every embedded cluster of
the suite also start Ray's dashboard processes (two more ports on 0.0.0.0, and CPU on a
2-core machine).  Resolving and installing them costs about 35 s of one core on a fresh
machine, so the session starts the install in the background, at low priority, as soon
as it knows the ``ray start`` tests will run (``tests/conftest.py``), and the head
fixture only waits for it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_install: dict[str, object] = {}


def needed() -> bool:
    """Whether the job server's packages are missing from this environment."""
    return importlib.util.find_spec("aiohttp") is None or importlib.util.find_spec("aiohttp_cors") is None


def requirements() -> list[str]:
    """Ray's ``default`` extra, as this Ray version declares it."""
    return [r.split(";")[0].strip() for r in importlib.metadata.requires("ray") or []
            if 'extra == "default"' in r.replace("'", '"')]


def start() -> None:
    """Start installing the packages into a private directory (nice 10), if needed and
    not started yet."""
    if _install or not needed():
        return
    directory = Path(tempfile.mkdtemp(prefix="engine-job-server-"))
    log = open(directory.parent / f"{directory.name}.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
         str(directory / "packages"), *requirements()],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: os.nice(10))
    _install.update(directory=directory, process=process, log=log)


def wait(timeout_s: float = 600.0) -> str:
    """The PYTHONPATH entry holding the packages ("" when the environment has them);
    starts the install if the session did not.  A failed install fails with pip's output."""
    if not needed():
        return ""
    start()
    process: subprocess.Popen = _install["process"]  # type: ignore[assignment]
    process.wait(timeout=timeout_s)
    if process.returncode != 0:
        log = _install["log"]
        log.seek(0)  # type: ignore[union-attr]
        raise RuntimeError(f"installing Ray's job-server packages failed:\n{log.read()[-3000:]}")  # type: ignore[union-attr]
    return str(Path(_install["directory"]) / "packages")  # type: ignore[arg-type]


def clean_up() -> None:
    """Stop an install still running and remove its directory (end of the session)."""
    if not _install:
        return
    process: subprocess.Popen = _install["process"]  # type: ignore[assignment]
    if process.poll() is None:
        process.kill()
        process.wait()
    _install["log"].close()  # type: ignore[union-attr]
    directory = Path(_install["directory"])  # type: ignore[arg-type]
    shutil.rmtree(directory, ignore_errors=True)
    Path(directory.parent / f"{directory.name}.log").unlink(missing_ok=True)
    _install.clear()
