"""Errors of the Lambda architecture that callers may meet (all ``EngineError``s).

``QueryFailedError`` (no answer could be assembled) lives in ``engine.errors``; these are
the Lambda-specific causes behind it and the speed layer's failure states.
"""

from __future__ import annotations

from engine.errors import EngineError, TransientError


class StaleSnapshotError(TransientError):
    """A view shard does not (or no longer) hold the state of the requested snapshot
    ``(W, H)``; the serving layer retries with a fresh snapshot."""


class ShardUnavailableError(TransientError):
    """A view shard did not answer (it died, or missed the query deadline)."""

    def __init__(self, shard: str, detail: str) -> None:
        super().__init__(f"view shard {shard} did not answer: {detail}")
        self.shard = shard
        self.detail = detail

    def __reduce__(self):  # keep the fields across processes
        return (ShardUnavailableError, (self.shard, self.detail))


class QueryHandlerError(EngineError, RuntimeError):
    """A query's handler raised on a shard (a bug or a bad request, not a shard failure)."""


class SpeedLayerDownError(EngineError, RuntimeError):
    """The speed layer cannot take batches any more (a shard or the pipeline died);
    it is rebuilt from the master log."""


class SpeedLayerError(EngineError, RuntimeError):
    """A view's map or combine function failed in the speed layer: a bug in the view,
    reported instead of being retried forever.  ``rebuild_speed_layer()`` clears it."""


class BatchLayerError(EngineError, RuntimeError):
    """The scheduled batch recomputation failed and its retries gave up: the schedule
    stopped.  Ingest and queries raise it until ``recompute_batch()`` succeeds."""
