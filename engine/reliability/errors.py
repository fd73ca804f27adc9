"""Exceptions shared by the reliability components, and the transient-error test.

A failure is retried only when it is *classed* as transient: raising (or subclassing)
:class:`TransientError` is the explicit way; a retry policy may also name other
exception types in its ``retry_on`` tuple (for example ``ConnectionError``).
"""

from __future__ import annotations


class TransientError(Exception):
    """A failure worth retrying: the same call may succeed a little later."""


class CircuitOpenError(Exception):
    """A call was refused because the circuit breaker of a downstream is open.

    ``breaker`` names the downstream; ``retry_after_s`` is how long until the breaker
    will next consider letting a trial call through (0 when that is due now).
    """

    def __init__(self, breaker: str, retry_after_s: float) -> None:
        super().__init__(
            f"circuit breaker {breaker!r} is open; retry in {retry_after_s:.3f}s"
        )
        self.breaker = breaker
        self.retry_after_s = retry_after_s


class RateLimitedError(Exception):
    """A request was over its rate limit (drop mode) or waited past its timeout (queue mode).

    ``client_id`` names the client (``None`` for a bare token bucket), ``scope`` says
    which limit refused it (``"client"``, ``"global"`` or ``"bucket"``) and
    ``retry_after_s`` estimates when the tokens will be there.
    """

    def __init__(
        self, message: str, client_id: str | None, scope: str, retry_after_s: float
    ) -> None:
        super().__init__(message)
        self.client_id = client_id
        self.scope = scope
        self.retry_after_s = retry_after_s


def is_transient(
    exc: BaseException,
    retry_on: tuple[type[BaseException], ...] = (TransientError,),
) -> bool:
    """True when ``exc`` is an instance of one of the ``retry_on`` types.

    Interpreter-level exits (``KeyboardInterrupt``, ``SystemExit``,
    ``GeneratorExit``) are never transient, whatever ``retry_on`` says.
    """
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return False
    return isinstance(exc, retry_on)
