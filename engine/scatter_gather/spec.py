"""The inert description of a scatter-gather service, its options, results and errors.

A :class:`ScatterGather` says *what* to run: the shards, the handler each worker applies
to its shard, the aggregator that combines replies and the options (deadline, minimum
replies, result time-to-live).  It holds no actors and starts nothing; an executor
(``InlineScatterGather`` or ``RayScatterGather``) runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import pyarrow as pa
from engine.errors import NotEnoughRepliesError, RequestExpiredError, ScatterGatherError, UnknownRequestError, SpecError

Request = Union[dict, pa.Table]
Reply = Any  # a pa.Table (or RecordBatch) or a scalar
Handler = Callable[[pa.Table, Request], Reply]
Aggregator = Callable[[list], Any]


@dataclass(frozen=True)
class ScatterGatherOptions:
    """Settings of a scatter-gather service.

    - ``deadline_s``: how long ``gather`` waits for replies; late replies are left out
      and the result is marked partial.
    - ``min_replies``: fewer answers than this by the deadline raise
      :class:`NotEnoughRepliesError` naming the missing shards.
    - ``result_ttl_s``: how long a long-running request id stays valid after ``submit``.
    - ``hosts``: how many shard-host actors serve the shards on the Ray executor (each
      host holds several shards and answers for all of them in one call); ``None`` (the
      default) = one per node, as Elasticsearch runs one process per node: a request
      costs one actor call per node (on 2 cores, 8 shards on one host answered in 0.75x
      the time of two hosts).  More hosts (e.g. the cluster's CPUs) let several requests'
      handlers run in parallel under concurrent load.  Never more hosts than shards.
    - ``max_concurrency``: requests one shard host serves at once (actor threads), and
      calls one shard may have running at once on its host; a shard over that limit
      (e.g. stalled) is reported busy at once instead of queueing without bound.
    - ``parallel_after_s``: a shard host runs one request's shards one after another on
      one thread (cheaper than a thread hand-off per shard when shards answer in well
      under a millisecond); the shards not started this long after the request came in
      (at most half its budget) run on threads of their own, so a slow or stalled shard
      holds up the others on its host for at most this long.
    - ``num_cpus_per_host``: CPUs each shard host reserves (0 lets the hosts share a
      small cluster with other work).
    - ``reply_margin_s``: a host answers with whatever its shards finished a margin
      before the request's deadline, so its reply crosses the wire before the dispatcher
      stops waiting: the margin is a tenth of the time left, at least ``reply_margin_s``
      and at most half the time left (see ``placement.host_budget``).  The default, 10 ms,
      is measured: on a loaded 2-core machine a Ray reply's p99 is 5-6 ms, and with a 5 ms
      margin about half the replies of a host with a stalled shard came in too late.
    - ``warmup_request``: sent once to every worker when the executor starts (untimed),
      so first-call costs (imports, kernel set-up: ~0.2 s for some Arrow kernels) do not
      eat the first real request's deadline.
    - ``local_channel``: a shard host on the dispatcher's node also answers ``gather``
      over a Unix socket (``local_channel.py``: a 0700 directory, a random token, JSON
      requests and Arrow IPC replies, nothing unpickled), ~15 us a round trip against
      ~0.6 ms for a Ray actor call.  Requests that are not plain JSON, replies that are
      not all tables, streaming requests and hosts on other nodes use Ray calls.
      ``False``: Ray calls only.
    """

    deadline_s: float = 1.0
    min_replies: int = 1
    result_ttl_s: float = 600.0
    hosts: int | None = None
    max_concurrency: int = 16
    parallel_after_s: float = 0.002
    num_cpus_per_host: float = 0.0
    reply_margin_s: float = 0.010
    warmup_request: Request | None = None
    local_channel: bool = True

    def __post_init__(self) -> None:
        if not self.deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0, got {self.deadline_s!r}")
        if self.min_replies < 0:
            raise ValueError(f"min_replies must be >= 0, got {self.min_replies!r}")
        if not self.result_ttl_s > 0:
            raise ValueError(f"result_ttl_s must be > 0, got {self.result_ttl_s!r}")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency!r}")
        if self.hosts is not None and (isinstance(self.hosts, bool) or not isinstance(self.hosts, int)
                                       or self.hosts < 1):
            raise ValueError(f"hosts must be None or an int >= 1, got {self.hosts!r}")
        if not self.parallel_after_s >= 0:
            raise ValueError(f"parallel_after_s must be >= 0, got {self.parallel_after_s!r}")
        if self.num_cpus_per_host < 0:
            raise ValueError(f"num_cpus_per_host must be >= 0, got {self.num_cpus_per_host!r}")
        if not self.reply_margin_s >= 0:
            raise ValueError(f"reply_margin_s must be >= 0, got {self.reply_margin_s!r}")
        if not isinstance(self.local_channel, bool):
            raise ValueError(f"local_channel must be True or False, got {self.local_channel!r}")


@dataclass(frozen=True)
class ScatterGather:
    """One request fanned out to every shard; replies combined by ``aggregator``.

    ``handler(shard, request)`` runs on each shard and returns a reply (an Arrow table or
    a scalar), or a generator of partial replies for long-running requests.
    ``aggregator(replies)`` receives the list of replies that arrived (never empty) and
    returns the answer.  Shards are named ``shard-0``, ``shard-1``, ... in shard order;
    how they map to processes is the executor's business (see ``options.hosts``).
    """

    shards: Sequence[pa.Table]
    handler: Handler
    aggregator: Aggregator
    options: ScatterGatherOptions = field(default_factory=ScatterGatherOptions)

    def __post_init__(self) -> None:
        if isinstance(self.shards, (pa.Table, pa.RecordBatch)):
            raise TypeError("shards must be a list of pyarrow Tables, not a single table")
        shards = []
        for index, shard in enumerate(self.shards):
            if isinstance(shard, pa.RecordBatch):
                shard = pa.Table.from_batches([shard])
            if not isinstance(shard, pa.Table):
                raise TypeError(f"shard {index} is a {type(shard).__name__}, not a pyarrow Table")
            shards.append(shard)
        if not shards:
            raise ValueError("shards must be a non-empty list of pyarrow Tables")
        object.__setattr__(self, "shards", tuple(shards))
        if not callable(self.handler):
            raise TypeError(f"handler must be callable, got {type(self.handler).__name__}")
        if not callable(self.aggregator):
            raise TypeError(f"aggregator must be callable, got {type(self.aggregator).__name__}")
        if not isinstance(self.options, ScatterGatherOptions):
            raise TypeError("options must be a ScatterGatherOptions")
        check_min_replies(self.options, len(shards))

    @property
    def worker_names(self) -> list[str]:
        """Stable worker ids, ``shard-<index>``, one per shard."""
        return worker_names(len(self.shards))


def worker_names(count: int) -> list[str]:
    """The stable ids ``shard-0`` .. ``shard-<count-1>``."""
    return [f"shard-{index}" for index in range(count)]


def check_min_replies(options: ScatterGatherOptions, workers: int) -> None:
    """Reject a ``min_replies`` larger than the number of workers (it could never be met)."""
    if options.min_replies > workers:
        raise ValueError(
            f"min_replies={options.min_replies} exceeds the number of workers ({workers})")


@dataclass(frozen=True)
class GatherResult:
    """The aggregate of the replies that arrived, and who answered.

    - ``value``: the aggregator's output over the replies that arrived (``None`` when
      none has arrived yet, which only a long-running ``poll`` can return);
    - ``partial``: True when some worker's reply is not included (late, failed or, for a
      long-running request, still running);
    - ``answered`` / ``missing``: worker ids whose reply is complete / not (both in
      worker order); ``errors`` maps each failed worker to its error text;
    - ``done``: no more replies will arrive (always True for ``gather``);
    - ``elapsed_s``: seconds since the request was sent; ``request_id``: its id.
    """

    value: Any
    partial: bool
    answered: list[str]
    missing: list[str]
    elapsed_s: float
    request_id: str | None
    errors: dict[str, str] = field(default_factory=dict)
    done: bool = True
