"""Connecting to Ray: an embedded local cluster by default, or an existing cluster.

The embedded cluster starts no dashboard and runs with Ray's token authentication and a
private random token, one per driver process (``engine.runtime.auth``).  Ray's own servers
(GCS, raylet, core workers) still listen on every interface of the machine: the token is what keeps
others out.  See the README's security section.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import ray

from engine.errors import NotConnectedError
from engine.runtime.auth import EmbeddedToken, tighten_token_file, token_authentication_on
from engine.runtime.node_watch import NodeLoss, NodeWatch, NodeWatchOptions

_embedded_token = EmbeddedToken()
_watcher: "_Watcher | None" = None  # watches the cluster this process is connected to
_embedded_args: dict | None = None  # how the embedded cluster was started, to start it again
_restarting = False  # a restart keeps the token: Ray's client code caches the first one it read
_generation = 0  # counts the clusters this process connected to (a restart makes a new one)
_restart_lock = threading.Lock()  # one restart at a time, whoever noticed the loss
_past_losses: dict[int, NodeLoss] = {}  # generation -> the loss that ended it (a restart followed)

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
            allow_insecure: bool = False, ui: bool = False,
            node_watch: NodeWatchOptions | None = None) -> ClusterInfo:
    """Connect to Ray and return what was connected to.

    ``address=None`` starts (or reuses) an embedded local Ray cluster with no dashboard,
    token authentication on and a private random token (one per driver process, passed to the
    cluster's processes through their environment; no token file is written).  It refuses to start
    with ``RAY_AUTH_MODE`` set to anything but ``token`` unless ``allow_insecure=True``.
    ``address="auto"`` joins the cluster started on this machine by ``ray start --head``;
    ``"ray://host:port"`` or ``"host:port"`` joins a remote one (its token comes from
    ``RAY_AUTH_TOKEN`` or ``~/.ray/auth_token``, which is made private if others could read
    it).  In the driver of a `ray job submit` job, ``address=None`` joins the cluster the
    job was submitted to (so example jobs run there unchanged) instead of starting one.
    Calling ``connect`` again while connected returns the current connection.
    With ``warm`` the MapReduce worker pool starts in the background with the workers a job
    with default options leases (on one node one worker with a slot per CPU, on several one
    per CPU; each exits after a minute unused), so the first job starts at once.
    With ``ui`` the status page starts in this process (``engine.ui``: 127.0.0.1 only, a
    free port, a random token; its URL is printed once to standard error) and shows every
    handle ``engine.run`` returns; ``shutdown()`` stops it.
    ``node_watch`` (``NodeWatchOptions``) says how fast the loss of the cluster's GCS
    server or raylet is noticed and how often a MapReduce job, a pipeline or a Lambda
    deployment may restart the embedded cluster and continue (``node_loss()``; README,
    fault tolerance).
    """
    global _watcher, _embedded_args, _generation
    if address is None:
        address = submitted_job_address()
    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
        tighten_token_file()
        if address is None:
            if not _restarting:
                _embedded_token.install(allow_insecure)
            try:
                ray.init(
                    address="local",  # always a new embedded cluster, never a `ray start` one by accident
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    # Ray runs every worker process 15 nice steps below the driver; the
                    # engine's serving actors (view shards, pipeline replicas) must not
                    # lose the CPU to the driver's own work, and the batch work that should
                    # yield to them is lowered per task (``JobOptions.nice``) instead.
                    _system_config={"worker_niceness": 0},
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
            _embedded_args = dict(num_cpus=num_cpus, allow_insecure=allow_insecure, warm=warm)
        else:
            _require_reachable(address)
            ray.init(address=address, logging_level=logging.WARNING)
            _embedded_args = None
        _watcher = _Watcher.start(node_watch or NodeWatchOptions(), address)
        _generation += 1
        connected_now = True
    else:
        connected_now = False
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if warm and connected_now:  # once per connection: the pool keeps its workers warm itself
        from engine.mapreduce.rules import worker_shape
        from engine.runtime.supervisor import get_pool

        # The workers a job with default options leases (see ``JobOptions``).
        _, slots = worker_shape(None, None, False, max(1, cpus), cpu_nodes())
        get_pool().prewarm.remote(max(1, cpus), slots)
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
            # The embedded cluster's teardown ends every actor with it; on a cluster this
            # process joined, the pool and its workers are stopped one by one.
            if _embedded_args is None and node_loss() is None:  # a lost cluster has no pool to ask
                shutdown_pool()
        finally:
            disconnect()


def disconnect() -> None:
    """Disconnect this driver from Ray, leaving the engine's pooled actors on a cluster it
    joined (``shutdown`` stops them); the embedded cluster stops with its driver."""
    global _watcher
    if _watcher is not None:
        _watcher.stop()
        _watcher = None
    ray.shutdown()
    _embedded_token.remove()


def node_loss(of_generation: int | None = None) -> NodeLoss | None:
    """The loss of the connected cluster's GCS server or raylet, once noticed (None while
    it is fine, or when not connected).  With ``of_generation`` (a ``generation()`` seen
    earlier): the loss of that cluster, even if it has been restarted since, so a run whose
    actors lived there sees it whoever restarted it."""
    if of_generation is not None and of_generation != _generation:
        return _past_losses.get(of_generation)
    if _watcher is None or _watcher.node is not getattr(ray._private.worker, "_global_node", None):
        return None  # not connected through connect(), or to another session since
    return _watcher.loss()


def node_watch_options() -> NodeWatchOptions:
    """The ``NodeWatchOptions`` of the current connection (the defaults if none)."""
    return _watcher.options if _watcher is not None else NodeWatchOptions()


def generation() -> int:
    """A number that changes whenever this process connects to a (new) cluster: actors and
    objects made under one generation are gone under the next."""
    return _generation


def restart_embedded(lost_generation: int | None = None) -> ClusterInfo:
    """Stop the lost embedded cluster (whatever is left of it) and start a new one the
    way the first was started.  Only for the embedded cluster.  With ``lost_generation``
    (the ``generation()`` the caller saw lost) a cluster someone else has restarted since
    is kept: several runs may notice one loss."""
    global _watcher, _restarting
    with _restart_lock:
        if _embedded_args is None:
            raise NotConnectedError("only the embedded Ray cluster can be restarted by the engine")
        args, options = dict(_embedded_args), node_watch_options()
        if lost_generation is not None and lost_generation != _generation and ray.is_initialized() \
                and node_loss() is None:
            return ClusterInfo(address=None, cpus=available_cpus(), embedded=True)
        if _watcher is not None:
            loss = _watcher.loss()
            if loss is not None:
                _past_losses[_generation] = loss
            _watcher.stop()
            _watcher = None
        node = getattr(ray._private.worker, "_global_node", None)
        if node is not None:  # what is left of a lost cluster need not stop gracefully (that takes seconds)
            try:
                node.kill_all_processes(check_alive=False, allow_graceful=False)
            except Exception:  # ray.shutdown() tries again
                pass
        ray.shutdown()
        _restarting = True
        try:
            return connect(**args, node_watch=options)
        finally:
            _restarting = False


def alive_nodes() -> int:
    """Nodes of the connected cluster that are alive (at least 1)."""
    return max(1, sum(1 for node in ray.nodes() if node.get("Alive")))


def available_cpus() -> int:
    """CPUs of the connected cluster (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def cpu_nodes() -> int:
    """Alive nodes of the connected cluster that have CPUs (at least 1)."""
    return max(1, sum(1 for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0))


def require_ray(what: str) -> None:
    """Raise ``NotConnectedError`` unless this process is connected to Ray: the one check
    every Ray executor makes (none of them connects, or lets Ray start a cluster, by itself)."""
    if not ray.is_initialized():
        raise NotConnectedError(f"{what} needs Ray: call engine.connect() first, or run with executor='inline'")


class _Watcher:
    """The Ray shell of ``NodeWatch``: a daemon thread that checks the cluster's GCS
    server and raylet every ``check_every_s``: on the embedded cluster whether the
    processes this driver started have exited, on an external one whether their ports
    accept connections."""

    def __init__(self, options: NodeWatchOptions, watch: NodeWatch, check: Callable[[], dict], node: Any) -> None:
        self.options, self._watch, self._check, self.node = options, watch, check, node
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="engine-node-watch", daemon=True)

    @classmethod
    def start(cls, options: NodeWatchOptions, address: str | None) -> "_Watcher":
        node = getattr(ray._private.worker, "_global_node", None)
        if address is None and node is not None:
            processes = {name: infos[0].process for name, infos in node.all_processes.items()
                         if name in ("gcs_server", "raylet") and infos}
            check = lambda: {"exited": {n: p.poll() is not None for n, p in processes.items()}}  # noqa: E731
        else:
            targets = _external_targets(node)
            check = lambda: {"answers": {n: _accepts(t) for n, t in targets.items()}}  # noqa: E731
        watcher = cls(options, NodeWatch(options, embedded=address is None, address=address), check, node)
        watcher._thread.start()
        return watcher

    def _run(self) -> None:
        while not self._stopped.wait(self.options.check_every_s):
            try:
                seen = self._check()
            except Exception:  # a failed check is no verdict
                continue
            with self._lock:
                if self._watch.observe(time.monotonic(), **seen) is not None:
                    return

    def loss(self) -> NodeLoss | None:
        with self._lock:
            return self._watch.loss

    def stop(self) -> None:
        self._stopped.set()


def _require_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in one line when nothing accepts connections at the cluster's address
    (``ray.init`` would retry for minutes); an address Ray cannot resolve is left to Ray."""
    if address.startswith("ray://"):
        target: str | None = address[len("ray://"):]
    else:
        try:
            target = ray._private.services.canonicalize_bootstrap_address(address)
        except Exception:  # e.g. "auto" with no cluster: Ray's own one-line error follows
            return
    if not target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise NotConnectedError(f"no Ray cluster answers at {address} ({target}: {reason})") from None


def _external_targets(node: Any) -> dict[str, tuple[str, int]]:
    """The GCS server's and the local raylet's TCP addresses (none for a ``ray://`` client)."""
    targets: dict[str, tuple[str, int]] = {}
    try:
        host, port = node.gcs_address.rsplit(":", 1)
        targets["gcs_server"] = (host, int(port))
        here = ray.get_runtime_context().get_node_id()
        for entry in ray.nodes():
            if entry.get("NodeID") == here and entry.get("Alive"):
                targets["raylet"] = (entry["NodeManagerAddress"], int(entry["NodeManagerPort"]))
    except Exception:  # a Ray client connection has no local node: nothing to probe
        pass
    return targets


def _accepts(target: tuple[str, int]) -> bool:
    """Whether something accepts TCP connections at ``target`` (within one second)."""
    try:
        with socket.create_connection(target, timeout=1.0):
            return True
    except OSError:
        return False
