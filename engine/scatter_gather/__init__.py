"""Scatter-gather: one request to every shard in parallel, replies aggregated.

Describe the service with :class:`ScatterGather` (shards, handler, aggregator, options)
and run it with ``engine.run(spec, executor="ray" | "inline")``, which returns the
service handle (``gather``, ``submit``/``poll``/``wait``, and the ``Handle`` methods).
Each request has a deadline; late shards are left out and named in the
:class:`GatherResult`.  ``ray_executor.RayScatterGather.from_actors`` serves your own actors.
"""

from engine.errors import NotEnoughRepliesError, RequestExpiredError, ScatterGatherError, UnknownRequestError
from engine.scatter_gather.aggregators import (ConcatReplies, SumReplies, TopKReplies, concat_replies,
                                               sum_replies, top_k_replies)
from engine.scatter_gather.spec import GatherResult, ScatterGather, ScatterGatherOptions

__all__ = [
    "ConcatReplies", "GatherResult", "NotEnoughRepliesError", "RequestExpiredError", "ScatterGather",
    "ScatterGatherError", "ScatterGatherOptions", "SumReplies", "TopKReplies", "UnknownRequestError",
    "concat_replies", "sum_replies", "top_k_replies",
]
