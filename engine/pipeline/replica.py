"""The replica actor of a stage, and the pool that reuses idle replicas across runs.

One call per batch.  The call returns ``1 + parts`` objects: a small ``meta`` dict
(counters, dead rows; see ``filtering.process_batch``) that the coordinator reads, then
the output split into ``parts`` tables by the next stage's key (``None`` for an empty
part).  The outputs stay in the object store; only their references travel through the
coordinator.

Starting an actor starts a worker process (about a second on a busy 2-core machine),
so replicas are generic: a run ``configure``s an idle one with its stage's filter, and
hands it back to the pool when the run ends (replicas that died are never reused).
"""

from __future__ import annotations

import threading

import pyarrow as pa
import ray

from engine.pipeline.filtering import LinkStage, process_batch


@ray.remote(max_restarts=0, max_concurrency=1)
class StageReplica:
    """One replica of a link (a stage, and those chained after it); calls run one at a
    time, in the order they were submitted."""

    def __init__(self) -> None:
        self.link: tuple[LinkStage, ...] = ()

    def configure(self, link: tuple[LinkStage, ...]) -> None:
        """Become a replica of this link's stages (calls submitted after this one use them)."""
        self.link = link

    def process(self, batch: pa.Table, next_key: str | None, parts: int) -> tuple[object, ...]:
        """Filter ``batch`` through the link; returns ``(meta, part_0, ..., part_{parts-1})``."""
        if not self.link:
            raise RuntimeError("replica has no filter: its configure() call failed (see the configure error)")
        meta, pieces = process_batch(self.link, batch, next_key, parts)
        return (meta, *pieces)

    def process_window(self, block: pa.Table, offset: int, rows: int, next_key: str | None,
                       parts: int) -> tuple[object, ...]:
        """``process`` of rows ``offset`` to ``offset + rows`` of ``block`` (a block of an
        in-memory source, see ``source_blocks``)."""
        return self.process(block.slice(offset, rows), next_key, parts)


class ReplicaPool:
    """Idle replica actors of this Ray session, by CPU request, reused by later runs."""

    def __init__(self, max_idle: int = 8) -> None:
        self.max_idle = max_idle
        self._idle: dict[float, list[object]] = {}
        self._session: str | None = None
        self._lock = threading.Lock()

    def _current_session(self) -> str:
        context = ray.get_runtime_context()
        return f"{context.get_node_id()}/{context.get_job_id()}"

    def acquire(self, link: tuple[LinkStage, ...], num_cpus: float) -> tuple[object, ray.ObjectRef]:
        """A replica actor configured for ``link`` (an idle one with ``num_cpus`` if any,
        else a new one), and the reference of its ``configure`` call (it fails if a filter
        cannot load)."""
        with self._lock:
            session = self._current_session()
            if session != self._session:  # Ray was restarted: old handles are dead
                self._idle, self._session = {}, session
            idle = self._idle.get(num_cpus, [])
            actor = idle.pop() if idle else StageReplica.options(num_cpus=num_cpus).remote()
        return actor, actor.configure.remote(link)  # type: ignore[attr-defined]

    def release(self, actor: object, num_cpus: float) -> None:
        """Give back a healthy, idle replica (killed when the pool is full)."""
        with self._lock:
            if self._session == self._current_session():
                idle = self._idle.setdefault(num_cpus, [])
                if sum(len(v) for v in self._idle.values()) < self.max_idle:
                    idle.append(actor)
                    return
        ray.kill(actor)  # type: ignore[arg-type]

    def clear(self) -> None:
        """Kill every idle replica."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for actors in idle.values():
            for actor in actors:
                try:
                    ray.kill(actor)  # type: ignore[arg-type]
                except Exception:  # already gone
                    pass


REPLICA_POOL = ReplicaPool()


def release_idle_replicas() -> None:
    """Kill the idle replica actors kept for reuse (at most 8 worker processes, 0 CPUs)."""
    REPLICA_POOL.clear()
