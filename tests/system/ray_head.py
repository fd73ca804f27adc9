"""A `ray start --head --block` cluster for system tests, stopped by its own process group
(never `ray stop`, which would stop every Ray cluster of this user on the machine)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Iterator, Sequence

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def ray_head(args: Sequence[str], env: dict[str, str], timeout_s: float = 120) -> Iterator[list[str]]:
    """Run ``ray start --head --block *args`` until the block exits; yields the lines it
    printed up to "Ray runtime started" (fails the test if it never gets there)."""
    head = subprocess.Popen(["ray", "start", "--head", "--block", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        seen: list[str] = []
        assert head.stdout is not None
        for line in head.stdout:  # wait until the head says it is up
            seen.append(line)
            if "Ray runtime started" in line:
                break
        else:
            pytest.fail("ray start --head did not come up:\n" + "".join(seen[-20:]))
        yield seen
    finally:
        # Every process of the head (GCS, raylet, agents, workers) is in its process group.
        # Ray's own orderly stop takes about 25 s on 2 cores; after a short grace the group
        # is killed (nothing of it outlives it: checked with ps).
        _signal_group(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(head.pid, signal.SIGKILL)
        head.wait(timeout=timeout_s / 2)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the group of the head this helper started, and only that
    except ProcessLookupError:  # already gone
        pass
