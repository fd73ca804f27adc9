"""What a pipeline is: inert, validated dataclasses (source -> filter stages -> sink).

A pipeline holds no threads, actors or open files and does not know its executors;
``engine.run`` hands it to one (``local.py`` inline, ``ray_executor.py`` on Ray).  Stage ids are stable and unique: they key metrics
and dead letters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable

import pyarrow as pa

from engine.io.sinks import Sink
from engine.io.sources import Source
from engine.common.retry import RetryPolicy

FilterFn = Callable[[pa.Table], "pa.Table | pa.RecordBatch"]

_STAGE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED_STAGE_IDS = ("source", "sink")  # they key the source's and the sink's metrics


@dataclass(frozen=True)
class AutoscalePolicy:
    """Grow a stage when its input pipe stays at/above ``high_water`` batches, shrink it when
    it stays at/below ``low_water``, for ``sustain_s`` seconds, within ``min``..``max`` replicas.
    """

    min_replicas: int = 1
    max_replicas: int = 4
    high_water: int = 6
    low_water: int = 1
    sustain_s: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"AutoscalePolicy needs 1 <= min_replicas <= max_replicas, got "
                f"{self.min_replicas}..{self.max_replicas}"
            )
        if not 0 <= self.low_water < self.high_water:
            raise ValueError(
                f"AutoscalePolicy needs 0 <= low_water < high_water, got {self.low_water}, {self.high_water}"
            )
        if self.sustain_s < 0:
            raise ValueError(f"AutoscalePolicy.sustain_s must be >= 0, got {self.sustain_s}")


@dataclass(frozen=True)
class SinkBreakerPolicy:
    """The circuit breaker around sink writes (``engine.common.circuit_breaker``).

    A write that fails transiently (after ``PipelineOptions.sink_retry``, if any) counts
    one failure; ``failure_threshold`` consecutive failures open the breaker, and the sink
    is left alone for ``reset_timeout_s``.  Then up to ``half_open_trials`` trial writes
    are made, one per opening; a successful one closes the breaker and the run goes on, a
    failed one re-opens it; when no trial is left the run fails naming the sink and its
    last error.  A write error that is not transient fails the run at once.
    """

    failure_threshold: int = 5
    reset_timeout_s: float = 1.0
    half_open_trials: int = 1

    def __post_init__(self) -> None:
        for name in ("failure_threshold", "half_open_trials"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SinkBreakerPolicy.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.reset_timeout_s, bool) or not isinstance(self.reset_timeout_s, (int, float)) \
                or not self.reset_timeout_s >= 0:
            raise ValueError(f"SinkBreakerPolicy.reset_timeout_s must be a number >= 0, got {self.reset_timeout_s!r}")


@dataclass(frozen=True)
class Stage:
    """One filter stage: a stateless function over an Arrow batch, run by ``replicas`` actors.

    - ``fn(table) -> table``: may drop or add rows and change the schema.  It must be
      deterministic for the exactly-once guarantee (a resent batch must give the same rows).
    - ``retry``: transient failures (``TransientError`` by default) are retried per this
      policy; a batch that still fails is split to isolate its bad rows, which go to the
      dead-letter store while the good rows go on.
    - ``key``: route rows by a stable hash of this column, so a key's rows always go to the
      same replica (key affinity); ``None`` routes each batch to the least-loaded replica.
    - ``pipe_capacity``: bound of this stage's input pipe, in batches.
    - ``num_cpus``: CPUs each replica actor reserves (0 lets stages share cores).
    """

    id: str
    fn: FilterFn
    replicas: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    key: str | None = None
    pipe_capacity: int = 8
    autoscale: AutoscalePolicy | None = None
    num_cpus: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _STAGE_ID.match(self.id):
            raise ValueError(
                f"stage id {self.id!r} is invalid: use 1-64 letters, digits, '_', '.', '-'"
            )
        if not callable(self.fn):
            raise TypeError(f"stage {self.id!r}: fn must be callable, got {type(self.fn).__name__}")
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise ValueError(f"stage {self.id!r}: replicas must be an int >= 1, got {self.replicas!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"stage {self.id!r}: retry must be a RetryPolicy, got {type(self.retry).__name__}")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ValueError(f"stage {self.id!r}: key must be a column name, got {self.key!r}")
        if isinstance(self.pipe_capacity, bool) or not isinstance(self.pipe_capacity, int) or self.pipe_capacity < 1:
            raise ValueError(f"stage {self.id!r}: pipe_capacity must be an int >= 1, got {self.pipe_capacity!r}")
        if self.num_cpus < 0:
            raise ValueError(f"stage {self.id!r}: num_cpus must be >= 0, got {self.num_cpus}")
        if self.autoscale is not None and not (
            self.autoscale.min_replicas <= self.replicas <= self.autoscale.max_replicas
        ):
            raise ValueError(
                f"stage {self.id!r}: replicas={self.replicas} is outside its autoscale bounds "
                f"{self.autoscale.min_replicas}..{self.autoscale.max_replicas}"
            )


@dataclass(frozen=True)
class PipelineOptions:
    """Settings of a pipeline run (one place, not keyword arguments everywhere).

    - ``ordered``: deliver batches to the sink in source order (so every key's rows keep
      source order); otherwise in completion order.
    - ``dead_letter_dir``: directory of the dead-letter store (``None``: rows that still
      fail are counted and dropped, which the metrics show as ``dead_letters``).
    - ``sink_capacity``: bound of the pipe into the sink, in batches.
    - ``source_capacity``: batches read ahead of stage 0 (a live feed has its own bound).
    - ``inflight_per_replica``: calls queued on one replica at once (a few hide call latency).
    - ``poll_interval_s``: how long the Ray coordinator waits for a completion per loop.
    - ``max_replica_restarts``: replicas of one stage that may die (and be replaced)
      before the run fails.
    - ``sink_retry``: retry policy for sink writes (transient errors of e.g. a callback
      into another service).
    - ``sink_breaker``: the circuit breaker around sink writes (``None``: a write that
      still fails after ``sink_retry`` fails the run at once).
    - ``chaining``: run consecutive stages in one call of one replica, as Flink chains
      operators, when the later stage has no ``key``, no autoscaling, and the same
      ``replicas`` and ``num_cpus`` as the one before it.  A batch then makes one hop
      (one actor call, one object-store round trip) through the whole chain instead of
      one per stage.  Each stage keeps its own metrics, retries and dead letters; the
      chain has the input pipe (``pipe_capacity``) of its first stage, and ``scale`` on
      any of its stages scales the whole chain.  ``False`` gives every stage its own
      replicas and pipe.
    """

    ordered: bool = False
    dead_letter_dir: str | None = None
    sink_capacity: int = 8
    source_capacity: int = 4
    inflight_per_replica: int = 4
    poll_interval_s: float = 0.01
    max_replica_restarts: int = 20
    sink_retry: RetryPolicy | None = None
    sink_breaker: SinkBreakerPolicy | None = field(default_factory=SinkBreakerPolicy)
    chaining: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.chaining, bool):
            raise TypeError(f"PipelineOptions.chaining must be True or False, got {self.chaining!r}")
        for name in ("sink_capacity", "source_capacity", "inflight_per_replica", "max_replica_restarts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PipelineOptions.{name} must be an int >= 1, got {value!r}")
        if self.sink_retry is not None and not isinstance(self.sink_retry, RetryPolicy):
            raise TypeError(f"PipelineOptions.sink_retry must be a RetryPolicy or None, got {type(self.sink_retry).__name__}")
        if self.sink_breaker is not None and not isinstance(self.sink_breaker, SinkBreakerPolicy):
            raise TypeError(
                f"PipelineOptions.sink_breaker must be a SinkBreakerPolicy or None, got {type(self.sink_breaker).__name__}"
            )
        if not self.poll_interval_s > 0:
            raise ValueError(f"PipelineOptions.poll_interval_s must be > 0, got {self.poll_interval_s}")


@dataclass(frozen=True)
class Pipeline:
    """source -> stages -> sink, validated on construction.  Run it with ``engine.run``::

        result = engine.run(pipeline, "inline").result()   # inline, no Ray: the oracle
        handle = engine.run(pipeline)                       # on Ray; handle.result() waits
    """

    source: Source
    stages: tuple[Stage, ...]
    sink: Sink
    options: PipelineOptions = field(default_factory=PipelineOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if not isinstance(self.source, Source):
            raise TypeError(f"pipeline source must be a Source, got {type(self.source).__name__}")
        if not isinstance(self.sink, Sink):
            raise TypeError(f"pipeline sink must be a Sink, got {type(self.sink).__name__}")
        if not self.stages:
            raise ValueError("a pipeline needs at least one stage")
        seen: set[str] = set()
        for stage in self.stages:
            if not isinstance(stage, Stage):
                raise TypeError(f"pipeline stages must be Stage objects, got {type(stage).__name__}")
            if stage.id in RESERVED_STAGE_IDS:
                raise ValueError(f"stage id {stage.id!r} is reserved (the metrics of the source and the sink use it)")
            if stage.id in seen:
                raise ValueError(f"duplicate stage id {stage.id!r}: stage ids must be unique")
            seen.add(stage.id)

    def stage(self, stage_id: str) -> Stage:
        """The stage with this id (a clear KeyError naming it otherwise)."""
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        raise KeyError(f"no stage {stage_id!r} in this pipeline (stages: {[s.id for s in self.stages]})")

    def with_options(self, **changes: object) -> "Pipeline":
        """A copy of this pipeline with some options changed."""
        return replace(self, options=replace(self.options, **changes))
