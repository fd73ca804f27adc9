"""A running Lambda deployment: master log + batch, speed and serving layers over a spec.

``engine.run(LambdaArchitecture(...), "inline" | "ray")`` returns a
:class:`LambdaDeployment`.  It implements ``engine.runtime.handle.Handle`` (open-ended
work: ``progress()`` is ``None``; ``result()`` waits for ``close()``) and the deployment's
own methods: ``ingest``, ``query``, ``recompute_batch``, ``start_batch_schedule`` /
``stop_batch_schedule``, ``wait_visible``, ``rebuild_speed_layer`` / ``heal``, ``state_size``,
``close``.

Locks, always taken in this order: ``_batch_lock`` (one recomputation at a time),
``_ingest_lock`` (ingests, in log order), the cluster guard's (one recovery at a time),
``_shard_lock`` (replacing shards or switching their batch view).  The batch job itself
runs holding only the first.

On Ray, the loss of the cluster never hangs a call: ``node_loss.ClusterGuard`` restarts
the embedded cluster and reopens the layers from the directory (acknowledged events are
in the log, which this process writes), or fails the deployment with one line.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from engine.common.hashing import hash_partition
from engine.errors import ResultTimeoutError
from engine.lambda_arch.backends import InlineBackend, shard_names
from engine.lambda_arch.batch_layer import BatchViews, commit_current, compute_batch_views, load_current, view_schemas
from engine.lambda_arch.errors import BatchLayerError, SpeedLayerDownError, SpeedLayerError
from engine.lambda_arch.handle import DeploymentHandle
from engine.lambda_arch.log import IngestAck, MasterLog
from engine.lambda_arch.node_loss import ClusterGuard
from engine.lambda_arch.schedule import BatchSchedule
from engine.lambda_arch.serving import Answer, ServingLayer
from engine.lambda_arch.spec import LambdaArchitecture
from engine.lambda_arch.speed_layer import DeltaApplier, Freshness, SpeedStage
from engine.runtime.handle import FAILED, SUCCEEDED
from engine.runtime.node_watch import ClusterLost, in_flight_ingest


def partition_views(views: BatchViews, spec: LambdaArchitecture) -> list[dict[str, pa.Table]]:
    """Per shard, its part of every view of a batch view (rows by stable hash of ``shard_by``)."""
    shards = spec.options.shards
    parts: list[dict[str, pa.Table]] = [{} for _ in range(shards)]
    for view in spec.views:
        for index, table in enumerate(hash_partition(views.tables[view.name], list(view.shard_by), shards)):
            parts[index][view.name] = table
    return parts


class LambdaDeployment(DeploymentHandle):
    """Ingest, batch recomputation, real-time views and queries over one directory.

    On Ray, a lost embedded cluster is restarted and the layers reopened from the
    directory by the next call (an ingest stored before the loss keeps its ack); a lost
    external one fails every call with one ``ClusterLostError`` line (``node_loss``)."""

    def __init__(self, spec: LambdaArchitecture, backend: InlineBackend) -> None:
        self.spec = spec
        self.options = spec.options
        self.executor = backend.name
        self.directory = Path(spec.directory)
        self._backend = backend
        self._schemas = view_schemas(spec)
        self.log = MasterLog(self.directory, spec.contract, self.options.dedup_horizon_ms,
                             self.options.log_compression, self.options.event_time_window)
        self.freshness = Freshness()
        self.batch_runs: list[dict[str, Any]] = []
        self._counts: Counter = Counter()
        self._batch_lock, self._ingest_lock, self._shard_lock = threading.Lock(), threading.RLock(), threading.RLock()
        self._speed_broken = threading.Event()
        self._closed = threading.Event()
        self._final_state = SUCCEEDED
        self._schedule: BatchSchedule | None = None
        self._pending_pin: int | None = None
        self._batch_error: BatchLayerError | None = None
        self._guard = ClusterGuard(str(self.directory), enabled=backend.name == "ray")
        try:
            self._views = load_current(self.directory, self._schemas[1])
            self.serving = ServingLayer(spec.queries, shard_names(self.options.shards), lambda message: [],
                                        self._views.version, self.options.query_retry, self.options.breaker_failures,
                                        self.options.breaker_reset_s)
            self._start_speed_layer()
        except BaseException:
            self._backend.destroy_shards()
            self.log.close()
            raise

    # -- speed layer lifecycle ---------------------------------------------------------

    def _start_speed_layer(self) -> None:
        """(Re)create the view shards and the speed layer, then replay the log from W."""
        version = self._views.version
        self._speed_broken.clear()
        self._backend.create_shards(version)
        self._backend.load_batch(version, partition_views(self._views, self.spec))
        if self._pending_pin is not None:
            self._backend.pin(self._pending_pin)
        self.serving.reset(version)
        self.serving.set_gather(self._backend.gather(), self._backend.probe)
        apply = self._backend.applier()

        def apply_to_shards(begin: int, end: int, parts: Any) -> None:
            try:
                apply(begin, end, parts)
            except SpeedLayerDownError:
                if self._applier.apply_to_shards is apply_to_shards:
                    self._speed_broken.set()  # ingest and wait_visible rebuild from the log
                raise

        speed_views = tuple(view for view in self.spec.views if not view.batch_only)
        self._applier = DeltaApplier(self.options.shards, apply_to_shards, self.serving.publish_speed, self.freshness)
        self.speed = self._backend.start_speed(SpeedStage(speed_views, self.options.shards), self._applier)
        for table in self.log.iter_tables(version, self.log.end_offset):
            self.speed.push(table)

    def _stop_speed_layer(self) -> None:
        try:
            self.speed.close(abandon=self._speed_broken.is_set() or not self.speed_layer_healthy(1.0))
        except Exception:  # a broken layer has nothing left to deliver
            pass
        self._backend.destroy_shards()

    def rebuild_speed_layer(self) -> None:
        """Throw the real-time state away and rebuild it from the log (after a crash).

        Ingest waits meanwhile; queries go on, answering with the offsets they cover.
        Also clears a ``SpeedLayerError`` (after the view is fixed).
        """
        with self._ingest_lock, self._shard_lock:
            self._guard.raise_if_lost()  # never rebuild on a lost cluster
            self._stop_speed_layer()
            self._start_speed_layer()
            self._counts["speed_rebuilds"] += 1

    def _abandon_cluster(self) -> None:
        """The cluster is lost: drop its speed layer and shards (their waits are bounded)."""
        self._speed_broken.set()
        try:
            self.speed.close(abandon=True)
        finally:
            self._backend.forget_shards()

    def _reopen_layers(self) -> None:
        """On a new cluster: the views this directory committed last, the log replayed since."""
        with self._shard_lock:
            self._views = load_current(self.directory, self._schemas[1])
            self._start_speed_layer()
            self._counts["cluster_restarts"] += 1

    def speed_layer_healthy(self, timeout_s: float = 5.0) -> bool:
        """True when every view shard answers and the speed layer is running."""
        return self.speed.running() and self._backend.healthy(timeout_s)

    def heal(self) -> bool:
        """Rebuild the speed layer from the log if a shard or the pipeline died; True if
        rebuilt.  A view's own failure (``SpeedLayerError``) cannot be healed: it is raised."""
        if self._applier.error is not None:
            raise self._applier.error
        if self.speed_layer_healthy():
            return False
        self.rebuild_speed_layer()
        return True

    # -- ingest ------------------------------------------------------------------------

    def ingest(self, batch: pa.Table | pa.RecordBatch, client_id: str = "default") -> IngestAck:
        """Durably append ``batch`` to the master log, then feed it to the speed layer.

        With ``LambdaOptions.ingest_limiter`` the batch is first admitted for its rows
        (``RateLimitedError`` in drop mode, a wait in queue mode): nothing is stored when
        it is refused.  A crashed speed layer is rebuilt from the log (ingest waits).  On
        a lost cluster see ``node_loss``: a batch stored before the loss stays acknowledged.
        """
        self._check_open()
        self._guard.ensure(self, in_flight_ingest(None))
        if self._applier.error is not None:
            raise self._applier.error
        self._raise_batch_error()
        limiter = self.options.ingest_limiter
        if limiter is not None and isinstance(batch, (pa.Table, pa.RecordBatch)) and batch.num_rows:
            limiter.admit(client_id, batch.num_rows)
        with self._ingest_lock:
            ack, stored = self.log.ingest(batch)
            self._counts.update(ingests=1, accepted=ack.accepted, duplicates=ack.duplicates, rejected=ack.rejected)
            self.freshness.acked(ack.end_offset)
            if stored.num_rows:
                try:
                    self._push(stored)
                except ClusterLost:  # stored already: the reopened layers replay it from the log
                    self._guard.ensure(self, in_flight_ingest((ack.first_offset, ack.end_offset)))
        return ack

    def _push(self, stored: pa.Table) -> None:
        try:
            if self._speed_broken.is_set():
                raise SpeedLayerDownError("a view shard died")
            self.speed.push(stored)
        except SpeedLayerDownError:
            if self._applier.error is None:
                self.rebuild_speed_layer()  # the batch is durable: the rebuild replays it
        except SpeedLayerError:
            pass  # the batch is durable and acknowledged; the next ingest and wait_visible report it

    def wait_visible(self, offset: int | None = None, timeout_s: float = 60.0) -> int:
        """Wait until queries cover offsets below ``offset`` (default: the log's end);
        returns the offset covered.  Rebuilds a crashed speed layer on the way."""
        target = self.log.end_offset if offset is None else offset
        deadline = time.monotonic() + timeout_s
        while self.serving.snapshot[1] < target:
            self._guard.ensure(self)
            if self._applier.error is not None:
                raise self._applier.error
            self._raise_batch_error()
            if self._speed_broken.is_set() or not self.speed.running():
                try:
                    self.rebuild_speed_layer()
                except ClusterLost:
                    continue  # the next turn's ensure deals with it
            if time.monotonic() > deadline:
                raise ResultTimeoutError(f"queries cover offsets below {self.serving.snapshot[1]}, not {target}, "
                                         f"after {timeout_s} s")
            time.sleep(0.002)
        return self.serving.snapshot[1]

    # -- batch layer -------------------------------------------------------------------

    def recompute_batch(self) -> int:
        """Recompute every view up to the log's end with one MapReduce job and switch to
        it (blue-green); returns its version W.  Success clears a ``BatchLayerError``."""
        self._check_open()
        self._guard.ensure(self)
        with self._batch_lock:
            with self._ingest_lock, self._shard_lock:
                version = self.log.end_offset
                if version == self._views.version:
                    self._batch_error = None
                    return version
                self._pending_pin = version
                try:
                    self._backend.pin(version)
                except (SpeedLayerDownError, ClusterLost):
                    self._speed_broken.set()  # the rebuild pins it on the new shards
            views = compute_batch_views(self.log, self.spec, version, self.options.batch_executor or self.executor,
                                        self._schemas)
            try:
                self._install(views)
            except ClusterLost:  # the views are computed: install them on the reopened layers
                self._guard.ensure(self)
                self._install(views)
            self.batch_runs.append({"version": version, "elapsed_s": views.elapsed_s, "finished": time.time()})
            self._counts["batch_recomputations"] += 1
            self._batch_error = None
            return version

    def _install(self, views: BatchViews) -> None:
        partitions = partition_views(views, self.spec)
        broken = False
        with self._shard_lock:
            try:
                self._backend.load_batch(views.version, partitions)
            except SpeedLayerDownError:
                broken = True
            commit_current(self.directory, views.version)
            self._views, self._pending_pin = views, None
            if not broken:
                self.serving.switch_batch(views.version)
                try:
                    self._backend.drop_below(views.version)
                except SpeedLayerDownError:
                    broken = True
        if broken:  # the rebuild serves the new version from new shards
            self._speed_broken.set()
            self.rebuild_speed_layer()

    def start_batch_schedule(self, every_s: float) -> None:
        """Recompute the batch views every ``every_s`` seconds in a background thread.

        A failed recomputation is retried per ``LambdaOptions.batch_retry``; when the
        retries give up, the schedule stops, ``status()`` is ``failed`` with the error,
        and ``result()``, ``ingest`` and ``query`` raise it as a ``BatchLayerError``
        until a ``recompute_batch()`` call succeeds.
        """
        self._check_open()
        schedule = BatchSchedule(self.recompute_batch, every_s, self.options.batch_retry, self._batch_failed)
        self.stop_batch_schedule()
        self._schedule = schedule
        schedule.start()

    def stop_batch_schedule(self) -> None:
        """Stop the periodic recomputation (waits for a running one to finish)."""
        if self._schedule is not None:
            self._schedule.stop()

    def _batch_failed(self, error: BatchLayerError) -> None:
        self._batch_error = error
        self._counts["batch_failures"] += 1

    def _raise_batch_error(self) -> None:
        error = self._batch_error
        if error is not None:
            raise BatchLayerError(str(error)) from error.__cause__

    # -- queries -----------------------------------------------------------------------

    def query(self, name: str, **request: Any) -> Answer:
        """Answer query ``name`` for ``request`` (see the query's own documentation); raises
        the ``BatchLayerError`` of a batch schedule that gave up.  A query that met the
        loss of the embedded cluster is asked again once the layers are reopened."""
        self._check_open()
        self._raise_batch_error()
        while True:
            self._guard.ensure(self)
            try:
                return self.serving.query(name, request, self.visible_event_time_ms())
            except Exception:
                if self._guard.loss() is None:
                    raise  # not the cluster's fault; else ask again on the reopened layers

    @property
    def snapshot(self) -> tuple[int, int]:
        """The (batch view version W, published speed offset H) queries use now."""
        return self.serving.snapshot

    @property
    def end_offset(self) -> int:
        """The offset the next stored event gets (= events stored)."""
        return self.log.end_offset

    @property
    def latest_event_time_ms(self) -> int:
        """The newest event time stored (0 for an empty log or a contract without time)."""
        newest = self.log.max_event_time_ms
        return newest if newest is not None else 0

    def visible_event_time_ms(self) -> int:
        """The newest event time among the offsets queries cover now (0 when none): the
        default "now" of queries with a time window."""
        newest = self.log.newest_time_below(self.serving.snapshot[1])
        return newest if newest is not None else 0

    def rejected_rows(self) -> pa.Table:
        """Every row ingest rejected, with its ``reject_reason`` (from the dead letters)."""
        return self.log.rejected_rows()

    def state_size(self) -> dict[str, int]:
        """What the deployment holds in memory for its views and dedup, summed over shards:
        real-time ``chunks``, ``speed_rows`` and ``speed_bytes``, ``batch_rows``, and the
        dedup index's ``dedup_entries`` (see ``ViewShard.status`` and ``dedup.py``)."""
        self._guard.ensure(self)
        with self._shard_lock:
            shards = self._backend.shard_status()
        totals = {name: sum(status[name] for status in shards) for name in ("speed_rows", "speed_bytes", "batch_rows")}
        return {"chunks": sum(len(status["chunks"]) for status in shards), **totals,
                "dedup_entries": self.log.dedup_entries}

    def shard_actors(self) -> list[object]:
        """The view-shard actors (Ray; for inspection and fault injection)."""
        return self._backend.shard_actors()

    def speed_replica_actors(self) -> list[object]:
        """The speed stage's replica actors (Ray; for inspection and fault injection)."""
        return self.speed.replica_actors()

    def close(self, _state: str = SUCCEEDED) -> None:
        """Stop the schedule and the speed layer (delivering what it holds), release the
        directory.  Reopening it later continues from it."""
        if self._closed.is_set():
            return
        self.stop_batch_schedule()
        with self._batch_lock, self._ingest_lock, self._shard_lock:
            if self._closed.is_set():
                return
            try:
                self._stop_speed_layer()
            finally:
                self.log.close()
                self._final_state = FAILED if _state == SUCCEEDED and self._failure() is not None else _state
                self._closed.set()

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise RuntimeError(f"the Lambda deployment on {self.directory} is closed")

    def __enter__(self) -> "LambdaDeployment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
