"""The one bad-record path: call user code on a batch, and isolate the rows it keeps failing on.

Every pattern calls user functions through ``call_isolating_failures``: MapReduce maps
and reduces, pipeline filters.  The common path is one call on the whole batch.  A
transient error (see ``RetryPolicy``) is retried with backoff; a deterministic error is
retried ``attempts`` times; then the batch is bisected, recursively, so the good rows go
on and only the rows that fail on their own are reported, grouped by error, with their
positions in the batch.  With ``group_bounds`` the cuts fall only between key groups (a
reduce's group is reduced whole or skipped whole).  ``describe_error`` is the one
description of an error that dead letters, status pages and error messages use.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa

from engine.common.retry import RetryPolicy

_MAX_TRACEBACK_CHARS = 64_000
_MAX_MESSAGE_CHARS = 2_000


@dataclass(frozen=True)
class ErrorDescription:
    """An error as data: its qualified type name, message and traceback text."""

    error_type: str
    message: str
    traceback: str = ""

    def one_line(self) -> str:
        """``Type: first line of the message``."""
        first = self.message.strip().splitlines()[0] if self.message.strip() else ""
        short = self.error_type.rsplit(".", 1)[-1]
        return f"{short}: {first}" if first else short


def describe_error(error: BaseException | str) -> ErrorDescription:
    """Describe an exception (unwrapping the user's error from a Ray task error), or a
    plain message given as a string."""
    if isinstance(error, str):
        return ErrorDescription("str", error[:_MAX_MESSAGE_CHARS])
    if not isinstance(error, BaseException):
        raise TypeError(f"describe_error needs an exception or a string, got {type(error).__name__}")
    cause = getattr(error, "cause", None)  # ray.exceptions.RayTaskError carries the user's error
    if isinstance(cause, BaseException) and type(error).__module__.startswith("ray."):
        error = cause
    cls = type(error)
    error_type = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    message = (str(error) or repr(error))[:_MAX_MESSAGE_CHARS]
    text = "".join(traceback.format_exception(error)) if error.__traceback__ is not None else ""
    return ErrorDescription(error_type, message, text[-_MAX_TRACEBACK_CHARS:])


@dataclass
class FailedRows:
    """Rows of one batch that failed with the same error, after retries.

    ``positions`` are the rows' indices in the batch given to ``call_isolating_failures``.
    """

    rows: pa.Table
    positions: np.ndarray
    error: ErrorDescription
    attempts: int


@dataclass
class Isolated:
    """What ``call_isolating_failures`` returns: the outputs of the calls that succeeded
    (in input order), the failed rows grouped by error, and how many calls raised
    (failed attempts, counting retries and bisection probes)."""

    outputs: list = field(default_factory=list)
    failed: list[FailedRows] = field(default_factory=list)
    failed_calls: int = 0

    @property
    def failed_rows(self) -> int:
        """Number of rows isolated as failing."""
        return sum(group.rows.num_rows for group in self.failed)


class _Counted:
    """Wraps the user function to count the calls that raise."""

    def __init__(self, fn: Callable[[pa.Table], object]) -> None:
        self.fn = fn
        self.failed_calls = 0
        self.attempts = 0

    def __call__(self, piece: pa.Table) -> object:
        self.attempts += 1
        try:
            return self.fn(piece)
        except Exception:
            self.failed_calls += 1
            raise


def call_isolating_failures(fn: Callable[[pa.Table], object], table: pa.Table, retry: RetryPolicy, *,
                            attempts: int = 1, group_bounds: np.ndarray | None = None, strict: bool = False,
                            isolate_transient: bool = True) -> Isolated:
    """Call ``fn`` on ``table``; isolate the rows it keeps failing on (see the module).

    - ``retry`` retries transient errors; ``attempts`` is how many times a deterministic
      error on the whole batch is tried before bisecting (pieces are tried once each).
    - ``group_bounds``: sorted row offsets of key-group starts plus the end; bisection
      cuts only there.
    - ``strict``: raise the first error instead of isolating (replays use it).
    - ``isolate_transient=False``: a transient error that outlasts the retry policy is
      raised (the caller retries the whole task elsewhere) instead of isolated.
    A zero-row table that fails raises: there is no row to blame.
    """
    counted = _Counted(fn)
    result = Isolated()
    groups: dict[tuple[str, str], FailedRows] = {}

    def call(piece: pa.Table, tries: int) -> object:
        last: Exception | None = None
        for _ in range(tries):
            counted.attempts = 0
            try:
                return retry.call(counted, piece)
            except Exception as error:  # user code may raise anything
                if retry.is_retryable(error) and not isolate_transient:
                    raise
                last = error
                if retry.is_retryable(error):
                    break  # the retry policy already spent its attempts on it
        assert last is not None
        raise last

    def attempt(piece: pa.Table, first: int, bounds: np.ndarray | None, tries: int) -> None:
        try:
            result.outputs.append(call(piece, tries))
            return
        except Exception as error:
            if strict or piece.num_rows == 0:
                raise
            cuts = bounds if bounds is not None else None
            whole_groups = cuts is not None and len(cuts) <= 2
            if piece.num_rows > 1 and not whole_groups:
                if cuts is None:
                    middle = piece.num_rows // 2
                    attempt(piece.slice(0, middle), first, None, 1)
                    attempt(piece.slice(middle), first + middle, None, 1)
                else:
                    middle_index = len(cuts) // 2
                    cut = int(cuts[middle_index])
                    attempt(piece.slice(0, cut), first, cuts[: middle_index + 1], 1)
                    attempt(piece.slice(cut), first + cut, cuts[middle_index:] - cut, 1)
                return
            description = describe_error(error)
            key = (description.error_type, description.message)
            positions = np.arange(first, first + piece.num_rows)
            if key in groups:
                group = groups[key]
                group.rows = pa.concat_tables([group.rows, piece])
                group.positions = np.concatenate([group.positions, positions])
                group.attempts = max(group.attempts, counted.attempts)
            else:
                groups[key] = FailedRows(piece, positions, description, counted.attempts)

    attempt(table, 0, group_bounds, max(1, attempts))
    result.failed = list(groups.values())
    result.failed_calls = counted.failed_calls
    return result
