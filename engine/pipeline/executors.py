"""The pipeline executors behind ``engine.run``: "inline" (the oracle) and "ray".

Both run the same flow core (``engine.pipeline.flow``) in a background thread of this
process and return a handle of one shape (``handle.PipelineHandle``).
"""

from __future__ import annotations

from engine.errors import SpecError
from engine.pipeline.handle import PipelineHandle
from engine.pipeline.spec import Pipeline
from engine.runtime.run import RunOptions


class InlinePipelineHandle(PipelineHandle):
    """A pipeline run inline (filters called in this process, no Ray) in a background thread."""


class InlineExecutor:
    """Runs a pipeline inline, in this process, without Ray."""

    def start(self, pipeline: Pipeline, options: RunOptions) -> InlinePipelineHandle:
        """Start ``pipeline`` and return its handle at once."""
        from engine.pipeline.local import InlineRun

        _check(pipeline, options)
        return InlinePipelineHandle(InlineRun(pipeline))


class RayExecutor:
    """Runs a pipeline on the connected Ray cluster: replica actors and bounded pipes."""

    def start(self, pipeline: Pipeline, options: RunOptions) -> PipelineHandle:
        """Start ``pipeline`` and return its handle at once."""
        from engine.pipeline.ray_executor import RayPipelineExecutor

        _check(pipeline, options)
        return RayPipelineExecutor().start(pipeline)


def _check(pipeline: Pipeline, options: RunOptions) -> None:
    if not isinstance(pipeline, Pipeline):
        raise SpecError(f"a pipeline executor needs a Pipeline, got {type(pipeline).__name__}")
    if options.resume or options.chaos is not None:
        raise SpecError("pipelines take neither resume nor chaos options")


EXECUTORS = {"inline": InlineExecutor, "ray": RayExecutor}
