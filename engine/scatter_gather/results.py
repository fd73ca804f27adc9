"""Shared by the executors: the minimum-replies check and the one-line shard error."""

from __future__ import annotations

from typing import Mapping, Sequence

from engine.common.bad_records import describe_error as describe
from engine.scatter_gather.spec import NotEnoughRepliesError


def check_enough(min_replies: int, answered: Sequence[str], missing: Sequence[str],
                 errors: Mapping[str, str]) -> None:
    """Raise :class:`NotEnoughRepliesError` when fewer than ``min_replies`` answered."""
    if len(answered) < min_replies:
        raise NotEnoughRepliesError(min_replies, answered, missing, dict(errors))


def describe_error(error: BaseException) -> str:
    """A one-line description of a shard's failure for ``GatherResult.errors`` (the
    engine's one ``describe_error``, which unwraps the user's error from a Ray task error)."""
    return describe(error).one_line()
