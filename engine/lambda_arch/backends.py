"""Where a deployment's view shards and speed layer live: in this process, or on Ray.

Both backends hold one :class:`~engine.lambda_arch.shard.ViewShard` per shard (plain
objects inline, thin actors on Ray), run the same speed stage (synchronously inline, as
an ``engine.pipeline`` pipeline on Ray) and give the serving layer a gather function
(``engine.scatter_gather`` on its inline executor over the objects, or over the actors).  The deployment
(``deployment.py``) drives them the same way, so the two executors cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

from engine.scatter_gather.spec import GatherResult

from engine.lambda_arch.errors import SpeedLayerDownError
from engine.runtime.node_watch import ClusterLost
from engine.lambda_arch.serving import Gather, ShardOutcome
from engine.lambda_arch.shard import ViewShard
from engine.lambda_arch.spec import LambdaArchitecture
from engine.lambda_arch.speed_layer import DeltaApplier, InlineSpeedLayer, PipelineSpeedLayer, SpeedStage


def shard_names(count: int) -> list[str]:
    """The stable shard ids ``shard-0`` .. ``shard-<count-1>``."""
    return [f"shard-{index}" for index in range(count)]


def outcomes(result: GatherResult, names: Sequence[str]) -> list[ShardOutcome]:
    """Per shard, its reply or why there is none, from a scatter-gather result."""
    replies = dict(zip(result.answered, result.value or []))
    return [ShardOutcome(name, reply=replies[name]) if name in replies
            else ShardOutcome(name, failure=result.errors.get(name, "no reply within the query deadline"))
            for name in names]


@dataclass(frozen=True)
class _AskShard:
    """Scatter-gather handler of the inline backend: the worker's table names its shard."""

    shards: Sequence[ViewShard]

    def __call__(self, table: pa.Table, message: dict[str, Any]) -> dict[str, Any]:
        return self.shards[table.column("shard")[0].as_py()].handle(message)


class InlineBackend:
    """Shards as objects of this process; the speed stage applied synchronously."""

    name = "inline"

    def __init__(self, spec: LambdaArchitecture) -> None:
        self.spec = spec
        self.shards: list[ViewShard] = []

    def create_shards(self, speed_start: int) -> None:
        """New, empty shards whose real-time state starts at ``speed_start``."""
        count = self.spec.options.shards
        options = self.spec.options
        self.shards = [ViewShard(index, count, self.spec.views, self.spec.queries, speed_start,
                                 options.compact_speed, options.speed_chunks) for index in range(count)]

    def load_batch(self, version: int, partitions: Sequence[Mapping[str, pa.Table]]) -> None:
        """Every shard holds its partition of batch view ``version``."""
        for shard, tables in zip(self.shards, partitions):
            shard.load_batch(version, tables)

    def pin(self, offset: int) -> None:
        """Keep ``offset`` a chunk boundary on every shard."""
        for shard in self.shards:
            shard.pin(offset)

    def drop_below(self, version: int) -> None:
        """Every shard forgets state below batch view ``version``."""
        for shard in self.shards:
            shard.drop_below(version)

    def applier(self) -> Callable[[int, int, Sequence[Mapping[str, bytes]]], None]:
        """``apply(begin, end, parts)`` to the shards there are now (not to replacements)."""
        shards = list(self.shards)

        def apply(begin: int, end: int, parts: Sequence[Mapping[str, bytes]]) -> None:
            for shard, tables in zip(shards, parts):
                shard.apply(begin, end, tables)

        return apply

    def gather(self) -> Gather:
        """Scatter-gather over the in-process shards (``engine.run(ScatterGather(...), "inline")``):
        each worker's "shard" is a one-row table naming the view shard it asks."""
        from engine.runtime.run import run
        from engine.scatter_gather.spec import ScatterGather, ScatterGatherOptions

        shards = list(self.shards)
        spec = ScatterGather(shards=[pa.table({"shard": [index]}) for index in range(len(shards))],
                             handler=_AskShard(shards), aggregator=list, options=ScatterGatherOptions(min_replies=0))
        service = run(spec, "inline")
        names = shard_names(len(shards))
        return lambda message: outcomes(service.gather(message), names)

    def shard_status(self) -> list[dict[str, Any]]:
        """Every shard's ``ViewShard.status()``."""
        return [shard.status() for shard in self.shards]

    def probe(self, name: str) -> bool:
        """In-process shards are always there."""
        return True

    def healthy(self, timeout_s: float) -> bool:
        """In-process shards never die on their own."""
        return True

    def start_speed(self, stage: SpeedStage, applier: DeltaApplier) -> InlineSpeedLayer:
        """The inline speed layer."""
        return InlineSpeedLayer(stage, applier)

    def destroy_shards(self) -> None:
        """Drop the shards."""
        self.shards = []

    def forget_shards(self) -> None:
        """Drop the shards without calling them (they died with their cluster)."""
        self.shards = []

    def shard_actors(self) -> list[object]:
        """No actors inline."""
        return []


class RayBackend(InlineBackend):
    """Shards as actors (``max_concurrency`` threads each); the speed layer a pipeline."""

    name = "ray"

    def __init__(self, spec: LambdaArchitecture) -> None:
        from engine.cluster import require_ray

        require_ray("a Lambda deployment on the Ray executor")
        super().__init__(spec)
        self.actors: list[Any] = []
        self.generation = 0  # the cluster the actors live on (engine.cluster.generation())

    def create_shards(self, speed_start: int) -> None:
        import ray

        from engine import cluster

        self.generation = cluster.generation()
        count = self.spec.options.shards
        actor_class = ray.remote(ViewShard).options(num_cpus=0, max_concurrency=8)
        options = self.spec.options
        self.actors = [actor_class.remote(index, count, self.spec.views, self.spec.queries, speed_start,
                                          options.compact_speed, options.speed_chunks, True) for index in range(count)]
        # Started, importable and with their compiled kernels loaded before the first query.
        self._call("warm_up", [() for _ in self.actors])

    def _call(self, method: str, arguments: Sequence[tuple], actors: Sequence[Any] | None = None) -> list[Any]:
        """Call ``method`` on every actor at once; a dead actor raises ``SpeedLayerDownError``,
        a lost cluster ``ClusterLost`` (the wait is bounded: it is checked every 0.25 s)."""
        import ray
        from ray.exceptions import RayActorError

        actors = list(self.actors if actors is None else actors)
        self._raise_if_lost()
        try:
            refs = [getattr(actor, method).remote(*args) for actor, args in zip(actors, arguments)]
            while len(ray.wait(refs, num_returns=len(refs), timeout=0.25, fetch_local=False)[0]) < len(refs):
                self._raise_if_lost()
            return ray.get(refs)
        except RayActorError as error:
            self._raise_if_lost()  # a shard that died with its cluster
            raise SpeedLayerDownError(f"a view shard died during {method}: {error}") from error

    def _raise_if_lost(self) -> None:
        from engine import cluster

        loss = cluster.node_loss(self.generation)
        if loss is not None:
            raise ClusterLost(loss)

    def load_batch(self, version: int, partitions: Sequence[Mapping[str, pa.Table]]) -> None:
        self._call("load_batch", [(version, dict(tables)) for tables in partitions])

    def pin(self, offset: int) -> None:
        self._call("pin", [(offset,) for _ in self.actors])

    def drop_below(self, version: int) -> None:
        self._call("drop_below", [(version,) for _ in self.actors])

    def applier(self) -> Callable[[int, int, Sequence[Mapping[str, bytes]]], None]:
        actors = list(self.actors)

        def apply(begin: int, end: int, parts: Sequence[Mapping[str, bytes]]) -> None:
            self._call("apply", [(begin, end, dict(tables)) for tables in parts], actors)

        return apply

    def gather(self) -> Gather:
        from engine.scatter_gather.ray_executor import RayScatterGather
        from engine.scatter_gather.spec import ScatterGatherOptions

        names = shard_names(len(self.actors))
        options = ScatterGatherOptions(deadline_s=self.spec.options.query_deadline_s, min_replies=0)
        service = RayScatterGather.from_actors(list(self.actors), aggregator=list, options=options, names=names)

        return lambda message: outcomes(service.gather(message), names)

    def shard_status(self) -> list[dict[str, Any]]:
        return self._call("status", [() for _ in self.actors])

    def probe(self, name: str) -> bool:
        import ray

        actor = dict(zip(shard_names(len(self.actors)), self.actors)).get(name)
        try:
            ray.get(actor.status.remote(), timeout=self.spec.options.query_deadline_s)  # type: ignore[union-attr]
        except Exception:
            return False
        return True

    def healthy(self, timeout_s: float) -> bool:
        import ray

        try:
            ray.get([actor.status.remote() for actor in self.actors], timeout=timeout_s)
        except Exception:
            return False
        return True

    def start_speed(self, stage: SpeedStage, applier: DeltaApplier) -> PipelineSpeedLayer:
        options = self.spec.options
        return PipelineSpeedLayer(stage, applier, options.speed_replicas, options.feed_capacity)

    def destroy_shards(self) -> None:
        import ray

        from engine import cluster

        if cluster.node_loss(self.generation) is None:  # actors of a lost cluster are gone with it
            for actor in self.actors:
                ray.kill(actor)
        self.actors = []

    def forget_shards(self) -> None:
        self.actors = []

    def shard_actors(self) -> list[object]:
        return list(self.actors)
