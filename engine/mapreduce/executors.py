"""The MapReduce executors behind ``engine.run``: "inline" (local mode, the oracle) and "ray"."""

from __future__ import annotations

from engine.errors import SpecError
from engine.mapreduce.local import InlineJobHandle
from engine.mapreduce.spec import MapReduceJob
from engine.runtime.handle import Handle
from engine.runtime.run import RunOptions


class InlineExecutor:
    """Runs a job with local mode, in this process, without Ray."""

    def start(self, job: MapReduceJob, options: RunOptions) -> InlineJobHandle:
        """Start ``job`` in a background thread and return its handle at once."""
        if options.chaos is not None:
            raise SpecError("fault injection (chaos) needs the ray executor")
        if options.resume:
            raise SpecError("resume=True needs the ray executor (local mode keeps no snapshots)")
        return InlineJobHandle(job)


class RayExecutor:
    """Runs a job on the connected Ray cluster: masters, workers, snapshots."""

    def start(self, job: MapReduceJob, options: RunOptions) -> Handle:
        """Start ``job`` and return its handle at once."""
        from engine.mapreduce.submit import submit  # imports Ray: only when this executor is used

        return submit(job, chaos=options.chaos, resume=options.resume)


EXECUTORS = {"inline": InlineExecutor, "ray": RayExecutor}
