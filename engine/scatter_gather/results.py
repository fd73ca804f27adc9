"""Turning the replies that arrived into a :class:`GatherResult` (shared by executors)."""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from engine.common.bad_records import describe_error as describe
from engine.scatter_gather.replies import flatten_replies
from engine.scatter_gather.spec import Aggregator, GatherResult, NotEnoughRepliesError


def build_result(aggregator: Aggregator, names: Sequence[str],
                 pieces: Mapping[str, Sequence[Any]], answered: set[str],
                 errors: Mapping[str, str], started: float, request_id: str | None,
                 done: bool = True) -> GatherResult:
    """Aggregate every piece that arrived, in worker order, and say who answered.

    ``pieces`` maps a worker id to the replies received from it so far (a worker still
    streaming may have pieces without being in ``answered``).
    """
    replies = flatten_replies(r for name in names for r in pieces.get(name, ()))
    value = aggregator(replies) if replies else None
    answered_list = [name for name in names if name in answered]
    missing = [name for name in names if name not in answered]
    return GatherResult(
        value=value, partial=bool(missing), answered=answered_list, missing=missing,
        elapsed_s=time.monotonic() - started, request_id=request_id,
        errors={name: errors[name] for name in names if name in errors}, done=done)


def check_enough(min_replies: int, answered: Sequence[str], missing: Sequence[str],
                 errors: Mapping[str, str]) -> None:
    """Raise :class:`NotEnoughRepliesError` when fewer than ``min_replies`` answered."""
    if len(answered) < min_replies:
        raise NotEnoughRepliesError(min_replies, answered, missing, dict(errors))


def describe_error(error: BaseException) -> str:
    """A one-line description of a shard's failure for ``GatherResult.errors`` (the
    engine's one ``describe_error``, which unwraps the user's error from a Ray task error)."""
    return describe(error).one_line()
