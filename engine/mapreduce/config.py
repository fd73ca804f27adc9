"""What every master of one job is given: ``MasterConfig`` (plain data, no Ray)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from engine.testing.chaos import MasterChaos, WorkerChaos


@dataclass(frozen=True)
class MasterConfig:
    """Everything a master needs to run (or take over) one job.

    ``pool`` is the supervisor's handle (it leases workers and master processes) and
    ``find_pool`` returns a live one again should that die: both are injected by whoever
    submits the job, so masters never import the supervisor that creates them.
    ``fingerprint`` is computed once, in the driver, so every master agrees on it.
    ``workers`` is how many workers the job may lease; ``new_workers``, when set, is how
    many of them may be new processes for its first lease (the pool's warm free workers
    are leased beyond it, up to ``workers``): a job with one map task starts one process.
    ``slots_per_worker`` is how many tasks each worker runs at once (it reserves a CPU
    for each).
    """

    job_id: str
    namespace: str
    output: str
    reducers: int
    workers: int
    snapshot_dir: str
    fingerprint: str
    pool: Any = None
    find_pool: Callable[[], Any] | None = None
    worker_chaos: dict[int, WorkerChaos] = field(default_factory=dict)
    master_chaos: MasterChaos = field(default_factory=MasterChaos)
    new_workers: int | None = None
    slots_per_worker: int = 1
