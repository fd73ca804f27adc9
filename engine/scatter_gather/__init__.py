"""Scatter-gather: one request to N shard workers in parallel, replies aggregated.

Describe the service with :class:`ScatterGather` (shards, handler, aggregator, options),
then run it with an executor: :class:`RayScatterGather` (shard actors) or
:class:`InlineScatterGather` (in-process, the test oracle); :func:`serve` picks one by
name.  Each request has a deadline; late workers are left out and named in the
:class:`GatherResult`.  Long-running requests: ``submit`` -> id, then ``poll``/``wait``.
"""

from __future__ import annotations

from typing import Union

from engine.scatter_gather.aggregators import (ConcatReplies, SumReplies, TopKReplies,
                                               concat_replies, sum_replies, top_k_replies)
from engine.scatter_gather.inline import InlineScatterGather
from engine.scatter_gather.ray_executor import RayScatterGather
from engine.scatter_gather.shard_actor import ShardActor
from engine.scatter_gather.spec import (GatherResult, NotEnoughRepliesError,
                                        RequestExpiredError, ScatterGather,
                                        ScatterGatherError, ScatterGatherOptions,
                                        UnknownRequestError)

EXECUTORS = ("ray", "inline")


def serve(spec: ScatterGather,
          executor: str = "ray") -> Union[RayScatterGather, InlineScatterGather]:
    """Start ``spec`` on the named executor (``"ray"`` or ``"inline"``); no fallback."""
    if executor == "inline":
        return InlineScatterGather(spec)
    if executor == "ray":
        return RayScatterGather(spec)
    raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")


__all__ = [
    "ConcatReplies", "GatherResult", "InlineScatterGather", "NotEnoughRepliesError",
    "RayScatterGather", "RequestExpiredError", "ScatterGather", "ScatterGatherError",
    "ScatterGatherOptions", "ShardActor", "SumReplies", "TopKReplies",
    "UnknownRequestError", "concat_replies", "serve", "sum_replies", "top_k_replies",
]
