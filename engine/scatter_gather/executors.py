"""The scatter-gather executors behind ``engine.run``: "inline" (the oracle) and "ray"."""

from __future__ import annotations

from engine.errors import SpecError
from engine.runtime.run import RunOptions
from engine.scatter_gather.service import ScatterGatherService
from engine.scatter_gather.spec import ScatterGather


class InlineExecutor:
    """Serves every shard in this process, in order, without Ray."""

    def start(self, spec: ScatterGather, options: RunOptions) -> ScatterGatherService:
        """Start serving ``spec``; returns the service handle at once."""
        from engine.scatter_gather.inline import InlineScatterGather

        _no_run_options(options)
        return InlineScatterGather(spec)


class RayExecutor:
    """Serves the shards from actors on the connected Ray cluster."""

    def start(self, spec: ScatterGather, options: RunOptions) -> ScatterGatherService:
        """Start the shard actors (ready when this returns) and return the service handle."""
        from engine.scatter_gather.ray_executor import RayScatterGather

        _no_run_options(options)
        return RayScatterGather(spec)


def _no_run_options(options: RunOptions) -> None:
    if options.resume or options.chaos is not None:
        raise SpecError("scatter-gather services take neither resume nor chaos options")


EXECUTORS = {"inline": InlineExecutor, "ray": RayExecutor}
