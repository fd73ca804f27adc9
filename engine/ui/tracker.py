"""Following one handle: periodic samples of its Handle methods, a short history, events.

A ``Tracker`` holds only a weak reference to its handle, so the status page never keeps
a job, pipeline or service alive: once the user drops the handle, the tracker keeps its
last sample (marked ``released``) until the registry forgets it.  Every handle method is
called defensively; a method that raises is reported on the page, never propagated.
Once a final state is seen the tracker asks for the result once (``result(timeout_s=0)``)
to show the final counters or the error, then stops sampling.
"""

from __future__ import annotations

import inspect
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.errors import ResultTimeoutError
from engine.runtime.handle import FINAL_STATES
from engine.ui.plain import to_plain

HISTORY_POINTS = 600  # ten minutes at one sample a second
EVENTS_KEPT = 200
RESULT_TRIES = 30  # samples to wait, after a final state, for result() to stop timing out


@dataclass
class Sample:
    """What the handle's methods returned at one moment (plain data) and which of them failed."""

    t: float
    status: dict[str, Any]
    metrics: dict[str, Any]
    counters: dict[str, Any]
    progress: float | None
    problems: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        """The reported state ("unknown" when status() gave none)."""
        return str(self.status.get("state", "unknown"))


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:500]


def _accepts(method: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def summarize_result(result: Any) -> dict[str, Any]:
    """The parts of a pattern's result worth showing (counters, timings, final metrics)."""
    if isinstance(result, dict):
        return {"metrics": to_plain(result)}
    summary: dict[str, Any] = {}
    for name in ("status", "elapsed_s", "counters", "details", "metrics", "rows_delivered", "output",
                 "map_tasks", "reduce_tasks", "attempts"):
        try:
            value = getattr(result, name)
        except Exception:  # a property of a result that cannot be computed is just left out
            continue
        if not callable(value):
            summary[name] = value
    ids = getattr(result, "dead_letter_ids", None)
    if isinstance(ids, list):
        summary["dead_letter_count"] = len(ids)
    return to_plain(summary)


class Tracker:
    """One registered handle as the status page sees it.

    ``view`` is the pattern's view (``engine.ui.views``): which extra arguments
    ``status()`` takes, which numbers go into the history and which events to derive.
    """

    def __init__(self, handle: Any, handle_id: str, kind: str, name: str, executor: str | None,
                 view: Any, spec_info: dict[str, Any], clock: Callable[[], float] = time.time) -> None:
        self.id = handle_id
        self.kind = kind
        self.name = name
        self.executor = executor
        self.view = view
        self.spec_info = spec_info
        self.clock = clock
        self.registered_at = clock()
        try:
            self._ref: Callable[[], Any] | None = weakref.ref(handle)
        except TypeError:  # a handle type without weak references: hold it until it ends
            self._ref = lambda: handle
        self.last: Sample | None = None
        self.history: deque[tuple[float, dict[str, float]]] = deque(maxlen=HISTORY_POINTS)
        self.events: deque[tuple[float, str]] = deque(maxlen=EVENTS_KEPT)
        self.scratch: dict[str, Any] = {}  # the view's own memory between samples
        self.finished_at: float | None = None
        self.released = False
        self.result: dict[str, Any] | None = None
        self.result_error: str | None = None
        self._result_tries = 0
        self._problems_seen: set[str] = set()
        self.lock = threading.RLock()  # held while the state changes and while the page renders it

    @property
    def state(self) -> str:
        """The last reported state ("starting" before the first sample)."""
        return self.last.state if self.last is not None else "starting"

    @property
    def active(self) -> bool:
        """True while the tracker still samples its handle."""
        return self.finished_at is None

    def note(self, text: str, t: float | None = None) -> None:
        """Record an event (shown newest first on the page)."""
        with self.lock:
            self.events.append((self.clock() if t is None else t, text))

    def sample(self) -> None:
        """Take one sample of the handle (no-op once finished).  The handle's methods are
        called without the lock, so a slow handle never blocks rendering."""
        if not self.active:
            return
        handle = self._ref() if self._ref is not None else None
        if handle is None:
            with self.lock:
                self.released = True
            self._finish("the handle was released by its owner; showing its last state")
            return
        sample = self._collect(handle)
        with self.lock:
            self._apply(sample)
        if sample.state in FINAL_STATES:
            self._fetch_result(handle)

    def _apply(self, sample: Sample) -> None:
        previous, self.last = self.last, sample
        notes = []
        if previous is None or previous.state != sample.state:
            notes.append(f"state {previous.state if previous is not None else 'registered'} → {sample.state}")
        for problem in sample.problems:
            if problem not in self._problems_seen and len(self._problems_seen) < 50:
                self._problems_seen.add(problem)
                notes.append(problem)
        notes += self.view.observe(previous, sample, self)
        self.events.extend((sample.t, text) for text in notes)
        self.history.append((sample.t, self.view.points(previous, sample, self)))

    def _collect(self, handle: Any) -> Sample:
        problems: list[str] = []

        def call(label: str, method: Callable[..., Any], default: Any, **kwargs: Any) -> Any:
            try:
                return method(**kwargs)
            except Exception as error:
                problems.append(f"{label}() failed: {_one_line(error)}")
                return default

        kwargs = {k: v for k, v in self.view.status_kwargs.items() if _accepts(handle.status, k)}
        status = to_plain(call("status", handle.status, {}, **kwargs))
        metrics = to_plain(call("metrics", handle.metrics, {}))
        counters = to_plain(call("counters", getattr(handle, "counters", dict), {}))
        progress = call("progress", handle.progress, None)
        if not isinstance(status, dict):
            status = {"value": status}
        if not isinstance(metrics, dict):
            metrics = {"value": metrics}
        if not isinstance(counters, dict):
            counters = {}
        progress_value = float(progress) if isinstance(progress, (int, float)) and not isinstance(progress, bool) \
            and 0.0 <= float(progress) <= 1.0 else None
        return Sample(self.clock(), status, metrics, counters, progress_value, problems)

    def _fetch_result(self, handle: Any) -> None:
        self._result_tries += 1
        kwargs = {"progress": False} if _accepts(handle.result, "progress") else {}
        result, error_text = None, None
        try:
            result = summarize_result(handle.result(timeout_s=0, **kwargs))
        except Exception as error:
            if isinstance(error, ResultTimeoutError) and self._result_tries < RESULT_TRIES:
                return  # the handle reports the end before its result is ready: ask again next time
            error_text = _one_line(error)
        with self.lock:
            self.result, self.result_error = result, error_text
        self._finish(None)

    def _finish(self, why: str | None) -> None:
        with self.lock:
            self.finished_at = self.clock()
            self._ref = None
            if why:
                self.events.append((self.finished_at, why))
