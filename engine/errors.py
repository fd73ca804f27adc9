"""Every error the engine raises on purpose, under one base class, ``EngineError``.

Each class also derives from the built-in exception it refines (``ValueError`` for a bad
specification, ``FileNotFoundError`` for a missing input, ...), so callers may catch
either.  Messages are one line and name the bad value, file, task or shard.
"""

from __future__ import annotations

from typing import Sequence


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class SpecError(EngineError, ValueError):
    """A job, pipeline, service or deployment description is invalid; the message names
    the field and the bad value."""


class NotConnectedError(EngineError, RuntimeError):
    """Something that needs Ray (a Ray executor, a Ray Dataset) was used before
    ``engine.connect()``, or ``connect`` found no cluster answering at the address given."""


class ResultTimeoutError(EngineError, TimeoutError):
    """``result(timeout_s=...)`` ran out of time; the work goes on."""


class MissingDependencyError(EngineError, ImportError):
    """An optional package a feature needs (pandas, Polars, Ray Data) is not installed; the
    message names the package to install."""


class ResultNotCollectedError(EngineError, LookupError):
    """A result was asked for as a table, but the run wrote its rows elsewhere (a pipeline
    whose sink is not a ``CollectSink``)."""


class InputNotFoundError(EngineError, FileNotFoundError):
    """An input path, directory or glob matched no file."""


class OutputExistsError(EngineError, FileExistsError):
    """An output directory already holds a result and overwriting was not asked for."""


class JobFailedError(EngineError, RuntimeError):
    """A MapReduce job cannot complete; the message says which task failed and why."""


class TooManyBadRecordsError(JobFailedError):
    """More records failed than the job's ``max_bad_record_fraction`` allows."""


class SnapshotError(EngineError, ValueError):
    """A snapshot file cannot be used: corrupt, truncated or from another job."""


class PipelineFailedError(EngineError, RuntimeError):
    """A pipeline run stopped on an error that is not a filter's (sink, source, engine)."""


class ClusterLostError(EngineError, RuntimeError):
    """The Ray cluster under a Lambda deployment was lost and the engine did not (or could
    not) restart it: the one-line message names what was lost and how to reopen it
    (``engine.runtime.node_watch``).  A pipeline fails with a ``PipelineFailedError`` of
    the same wording."""


class ScatterGatherError(EngineError, RuntimeError):
    """Base class of the errors raised by scatter-gather executors."""


class NotEnoughRepliesError(ScatterGatherError):
    """Fewer shards answered by the deadline than ``min_replies`` requires."""

    def __init__(self, needed: int, answered: Sequence[str], missing: Sequence[str],
                 errors: dict[str, str]) -> None:
        self.needed = needed
        self.answered = list(answered)
        self.missing = list(missing)
        self.errors = dict(errors)
        detail = "; ".join(f"{name}: {text}" for name, text in sorted(self.errors.items()))
        super().__init__(
            f"only {len(self.answered)} of {len(self.answered) + len(self.missing)} shards "
            f"answered, {needed} required; missing: {', '.join(self.missing)}"
            + (f" (errors: {detail})" if detail else ""))

    def __reduce__(self):  # keep the fields when Ray ships the error between processes
        return (NotEnoughRepliesError, (self.needed, self.answered, self.missing, self.errors))


class UnknownRequestError(EngineError, KeyError):
    """A request id that was never issued by this service, or has expired."""

    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0]) if self.args else "unknown request id"


class RequestExpiredError(UnknownRequestError):
    """The request id existed, but its result outlived ``result_ttl_s`` and was dropped."""


class QueryFailedError(EngineError, RuntimeError):
    """No consistent Lambda answer could be assembled within the retries."""


class TransientError(EngineError):
    """A failure worth retrying: the same call may succeed a little later.  User code
    raises it (or a subclass) to ask the engine for a retry with backoff."""


class CircuitOpenError(EngineError):
    """A call was refused because the circuit breaker of a downstream is open.

    ``breaker`` names the downstream; ``retry_after_s`` is how long until the breaker
    will next let a trial call through (0 when that is due now).
    """

    def __init__(self, breaker: str, retry_after_s: float) -> None:
        super().__init__(f"circuit breaker {breaker!r} is open; retry in {retry_after_s:.3f}s")
        self.breaker = breaker
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return (CircuitOpenError, (self.breaker, self.retry_after_s))


class RateLimitedError(EngineError):
    """A request was over its rate limit (drop mode) or waited past its timeout (queue mode).

    ``client_id`` names the client (``None`` for a bare token bucket), ``scope`` says
    which limit refused it (``"client"``, ``"global"`` or ``"bucket"``) and
    ``retry_after_s`` estimates when the tokens will be there.
    """

    def __init__(self, message: str, client_id: str | None, scope: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.client_id = client_id
        self.scope = scope
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return (RateLimitedError, (str(self), self.client_id, self.scope, self.retry_after_s))
