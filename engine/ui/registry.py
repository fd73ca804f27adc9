"""The handles the status page shows.  ``engine.run`` calls ``register`` for every handle.

With no status page running, ``register`` returns at once and keeps nothing.  With one
running, the handle gets a ``Tracker`` (a weak reference: the page never keeps a handle
alive) that the page's sampler samples once a second.  Finished handles stay visible for
``keep_finished_s`` (at most ``max_finished`` of them), then are forgotten.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Callable

logger = logging.getLogger(__name__)

# spec class name -> the kind of view that shows its handle
SPEC_KINDS = {"MapReduceJob": "mapreduce", "Pipeline": "pipeline", "ScatterGather": "scatter_gather",
              "LambdaArchitecture": "lambda", "LambdaSpec": "lambda"}
MODULE_KINDS = {"engine.mapreduce": "mapreduce", "engine.pipeline": "pipeline",
                "engine.scatter_gather": "scatter_gather", "engine.lambda_arch": "lambda"}

_active: "Registry | None" = None


def _views() -> dict[str, Any]:
    from engine.ui.view_common import GenericView
    from engine.ui.view_mapreduce import MapReduceView
    from engine.ui.view_pipeline import PipelineView
    from engine.ui.view_services import LambdaView, ScatterGatherView

    return {"mapreduce": MapReduceView(), "pipeline": PipelineView(), "scatter_gather": ScatterGatherView(),
            "lambda": LambdaView(), "other": GenericView()}


def kind_of(handle: Any, spec: Any) -> str:
    """The kind of view for a handle: from its spec's class, else from the handle's package."""
    if spec is not None:
        for klass in type(spec).__mro__:
            if klass.__name__ in SPEC_KINDS:
                return SPEC_KINDS[klass.__name__]
    module = type(handle).__module__
    for prefix, kind in MODULE_KINDS.items():
        if module == prefix or module.startswith(prefix + "."):
            return kind
    return "other"


def name_of(kind: str, spec: Any) -> str:
    """A display name: the spec's ``name``, else one made from its shape."""
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name:
        return name
    if kind == "pipeline" and getattr(spec, "stages", None):
        return "pipeline " + " → ".join(str(getattr(stage, "id", "?")) for stage in spec.stages)
    if kind == "scatter_gather" and getattr(spec, "shards", None) is not None:
        return f"scatter-gather over {len(spec.shards)} shards"
    return {"mapreduce": "MapReduce job", "lambda": "Lambda deployment"}.get(kind, "handle")


class Registry:
    """Trackers of the registered handles, newest first; safe to use from any thread."""

    def __init__(self, keep_finished_s: float = 600.0, max_finished: int = 50,
                 clock: Callable[[], float] = time.time) -> None:
        self.keep_finished_s = keep_finished_s
        self.max_finished = max_finished
        self.clock = clock
        self.changed = threading.Event()  # set by add(), so the sampler picks a new handle up at once
        self._lock = threading.Lock()
        self._trackers: list[Any] = []
        self._sampling: dict[str, threading.Thread] = {}  # tracker id -> the thread sampling it now
        self._numbers = itertools.count(1)
        self._views = _views()

    def add(self, handle: Any, spec: Any = None, executor: str | None = None, *, kind: str | None = None,
            name: str | None = None) -> Any:
        """Start tracking ``handle``; returns its tracker."""
        from engine.ui.tracker import Tracker

        kind = kind if kind in self._views else kind_of(handle, spec)
        view = self._views[kind]
        try:
            info = view.spec_info(spec) if spec is not None else {}
        except Exception:  # an unexpected spec shape costs the page some detail, never the run
            info = {}
        with self._lock:
            tracker = Tracker(handle, f"h{next(self._numbers)}", kind, name or name_of(kind, spec), executor,
                              view, info, clock=self.clock)
            self._trackers.insert(0, tracker)
        self.changed.set()
        return tracker

    def trackers(self) -> list[Any]:
        """The trackers, newest first."""
        with self._lock:
            return list(self._trackers)

    def sample_all(self, timeout_s: float | None = None) -> None:
        """Sample every active tracker, each in its own thread, waiting up to ``timeout_s``
        (None: until all are done); then forget finished ones past their time.

        A handle still answering its previous sample is not asked again, and a slow one
        (a master busy starting workers, a lost node) never holds up the others.
        """
        threads = [thread for thread in map(self._start_sample, self.trackers()) if thread is not None]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self.prune()

    def _start_sample(self, tracker: Any) -> threading.Thread | None:
        with self._lock:
            if tracker.id in self._sampling:
                return self._sampling[tracker.id]
            if not tracker.active:
                return None
            # daemon threads: a handle stuck in a call never keeps the interpreter from exiting
            thread = threading.Thread(target=self._sample_one, args=(tracker,), daemon=True,
                                      name=f"engine-ui-sample-{tracker.id}")
            self._sampling[tracker.id] = thread
            thread.start()  # under the lock: no other caller may join it before it started
        return thread

    def _sample_one(self, tracker: Any) -> None:
        try:
            tracker.sample()
        except Exception as error:  # a fault of the page, not of the run: show it, keep going
            logger.debug("status page: sampling %s failed", tracker.id, exc_info=True)
            tracker.note(f"the status page failed to sample this handle: {type(error).__name__}: {error}")
        finally:
            with self._lock:
                self._sampling.pop(tracker.id, None)

    def prune(self) -> None:
        """Forget finished trackers older than ``keep_finished_s`` or beyond ``max_finished``."""
        now = self.clock()
        with self._lock:
            kept, finished = [], 0
            for tracker in self._trackers:  # newest first
                if tracker.finished_at is not None:
                    finished += 1
                    if finished > self.max_finished or now - tracker.finished_at > self.keep_finished_s:
                        continue
                kept.append(tracker)
            self._trackers = kept

    def document(self) -> dict[str, Any]:
        """Everything the page shows, as plain data (see ``engine.ui.view_common``)."""
        handles = []
        for tracker in sorted(self.trackers(), key=lambda t: t.finished_at is not None):  # running ones first
            try:
                with tracker.lock:
                    handles.append(tracker.view.render(tracker))
            except Exception as error:
                logger.debug("status page: rendering %s failed", tracker.id, exc_info=True)
                handles.append({"id": tracker.id, "kind": tracker.kind, "name": tracker.name, "state": tracker.state,
                                "error": f"the status page could not render this handle: {type(error).__name__}: "
                                         f"{error}", "sections": [], "charts": [], "events": [], "headline": []})
        return {"generated_at": self.clock(), "handles": handles}


def activate(registry: Registry) -> None:
    """Make ``registry`` the one ``register`` feeds."""
    global _active
    _active = registry


def deactivate(registry: Registry) -> None:
    """Stop feeding ``registry`` (if it is the active one)."""
    global _active
    if _active is registry:
        _active = None


def active_registry() -> Registry | None:
    """The registry ``register`` feeds now, if a status page is running."""
    return _active


def register(handle: Any, spec: Any = None, executor: str | None = None, *, kind: str | None = None,
             name: str | None = None) -> None:
    """Show ``handle`` on the status page, if one is running (else do nothing).

    ``engine.run`` calls this for every handle it returns; code that makes a handle some
    other way may call it too (``kind``: "mapreduce", "pipeline", "scatter_gather",
    "lambda"; default from the spec or the handle's package).  It never raises.
    """
    registry = _active
    if registry is None:
        return
    try:
        registry.add(handle, spec, executor, kind=kind, name=name)
    except Exception:
        logger.warning("the status page could not register a handle", exc_info=True)
