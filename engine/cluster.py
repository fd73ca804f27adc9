"""Connecting to Ray: an embedded local cluster by default, or an existing cluster.

The embedded cluster starts no dashboard and runs with Ray's token authentication and a
private per-cluster token (``engine.runtime.auth``).  Ray's own servers (GCS, raylet,
core workers) still listen on every interface of the machine: the token is what keeps
others out.  See the README's security section.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import ray

from engine.errors import NotConnectedError
from engine.runtime.auth import EmbeddedToken, tighten_token_file, token_authentication_on

_embedded_token = EmbeddedToken()

# Ray's job supervisor sets both for the entrypoint of `ray job submit` (the job's driver).
_JOB_CONFIG_ENV, _ADDRESS_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR", "RAY_ADDRESS"


def submitted_job_address() -> str | None:
    """The cluster this process was started on by `ray job submit` (the address Ray's job
    supervisor gives the job's driver), or None when it was not started that way."""
    if os.environ.get(_JOB_CONFIG_ENV) and os.environ.get(_ADDRESS_ENV):
        return os.environ[_ADDRESS_ENV]
    return None


@dataclass(frozen=True)
class ClusterInfo:
    """What the engine is connected to: the address (None for embedded) and its CPUs."""

    address: str | None
    cpus: int
    embedded: bool
    ui_url: str | None = None  # the status page (token included) when connect(ui=True)


def connect(address: str | None = None, num_cpus: int | None = None, warm: bool = True,
            allow_insecure: bool = False, ui: bool = False) -> ClusterInfo:
    """Connect to Ray and return what was connected to.

    ``address=None`` starts (or reuses) an embedded local Ray cluster with no dashboard,
    token authentication on and a private per-cluster token (passed to the cluster's
    processes through their environment; no token file is written).  It refuses to start
    with ``RAY_AUTH_MODE`` set to anything but ``token`` unless ``allow_insecure=True``.
    ``address="auto"`` joins the cluster started on this machine by ``ray start --head``;
    ``"ray://host:port"`` or ``"host:port"`` joins a remote one (its token comes from
    ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``, which is made private if others could read
    it).  In the driver of a `ray job submit` job, ``address=None`` joins the cluster the
    job was submitted to (so example jobs run there unchanged) instead of starting one.
    Calling ``connect`` again while connected returns the current connection.
    With ``warm`` the MapReduce worker pool starts in the background (one worker per CPU,
    exiting after a minute unused), so the first job starts at once.
    With ``ui`` the status page starts in this process (``engine.ui``: 127.0.0.1 only, a
    free port, a random token; its URL is printed once to standard error) and shows every
    handle ``engine.run`` returns; ``shutdown()`` stops it.
    """
    if address is None:
        address = submitted_job_address()
    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        tighten_token_file()
        if address is None:
            _embedded_token.install(allow_insecure)
            try:
                ray.init(
                    address="local",  # always a new embedded cluster, never a `ray start` one by accident
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    logging_level=logging.WARNING,
                    log_to_driver=True,
                    configure_logging=True,
                )
            except BaseException:
                _embedded_token.remove()
                raise
            if not token_authentication_on() and not allow_insecure:
                ray.shutdown()
                _embedded_token.remove()
                raise NotConnectedError("the embedded Ray cluster came up without token authentication; "
                                        "refusing to use it (this Ray is too old or configured to disable it)")
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if warm:
        from engine.runtime.supervisor import get_pool

        get_pool().prewarm.remote(max(1, cpus))
    ui_url = None
    if ui:
        from engine.ui import start_ui

        ui_url = start_ui().url
    return ClusterInfo(address=address, cpus=max(1, cpus), embedded=address is None, ui_url=ui_url)


def shutdown() -> None:
    """Stop the engine's pooled actors and disconnect from Ray (stopping the embedded
    cluster if this process started it), and stop the status page if one runs."""
    from engine.ui import stop_ui

    stop_ui()
    if ray.is_initialized():
        from engine.runtime.supervisor import shutdown_pool

        try:
            shutdown_pool()
        finally:
            ray.shutdown()
            _embedded_token.remove()


def available_cpus() -> int:
    """CPUs of the connected cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def require_ray(what: str) -> None:
    """Raise ``NotConnectedError`` unless this process is connected to Ray: the one check
    every Ray executor makes (none of them connects, or lets Ray start a cluster, by itself)."""
    if not ray.is_initialized():
        raise NotConnectedError(f"{what} needs Ray: call engine.connect() first, or run with executor='inline'")
