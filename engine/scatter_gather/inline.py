"""The inline executor: every shard handled in this process, in order, without Ray.

It is the oracle the Ray executor is tested against and a debugging aid.  It has no
worker to wait on, so the deadline does not apply: every worker answers unless its
handler raises (then it is missing, with its error).  Long-running requests run to
completion inside ``submit`` and are kept by id like the Ray executor's.
"""

from __future__ import annotations

import time

from engine.errors import NotEnoughRepliesError
from engine.scatter_gather.gathering import Gathering
from engine.scatter_gather.replies import call_handler
from engine.scatter_gather.requests import RequestTable, new_request_id
from engine.scatter_gather.results import check_enough, describe_error
from engine.scatter_gather.service import ScatterGatherService
from engine.scatter_gather.spec import GatherResult, Request, ScatterGather


class InlineScatterGather(ScatterGatherService):
    """Runs a :class:`ScatterGather` in-process; same methods as ``RayScatterGather``."""

    executor_name = "inline"

    def __init__(self, spec: ScatterGather) -> None:
        self._init_service()
        self.spec = spec
        self.worker_names = spec.worker_names
        self.aggregator = spec.aggregator
        self.options = spec.options
        self._requests: RequestTable[GatherResult] = RequestTable(spec.options.result_ttl_s)

    def _run(self, request: Request, request_id: str | None) -> GatherResult:
        started = time.monotonic()
        gathering = Gathering(self.worker_names)
        for name, shard in zip(self.worker_names, self.spec.shards):
            try:
                gathering.piece(name, call_handler(self.spec.handler, shard, request))
                gathering.finished(name)
            except Exception as error:  # a shard's failure is reported, not raised
                gathering.failed(name, describe_error(error))
        gathering.close()
        return gathering.result(self.spec.aggregator, started, request_id)

    def gather(self, request: Request) -> GatherResult:
        """Send ``request`` to every shard and aggregate the replies.

        Raises ``NotEnoughRepliesError`` when fewer than ``min_replies`` workers answer.
        """
        result = self._run(request, None)
        try:
            check_enough(self.spec.options.min_replies, result.answered, result.missing,
                         result.errors)
        except NotEnoughRepliesError:
            self._note_failure()
            raise
        self._note(result)
        return result

    def submit(self, request: Request) -> str:
        """Run ``request`` now and keep its result under the returned request id."""
        request_id = new_request_id()
        return self._requests.add(self._run(request, request_id), request_id)

    def poll(self, request_id: str) -> GatherResult:
        """The result kept under ``request_id`` (raises ``UnknownRequestError`` if expired)."""
        return self._requests.get(request_id)

    def wait(self, request_id: str, timeout_s: float | None = None) -> GatherResult:
        """Same as :meth:`poll`: inline requests are complete when ``submit`` returns."""
        return self._requests.get(request_id)

    def close(self) -> None:
        """Stop serving (nothing to release in-process)."""
        self._stopped.set()
