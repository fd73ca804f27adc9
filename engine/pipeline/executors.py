"""The pipeline executors behind ``engine.run``: "inline" (the oracle) and "ray".

Both run the same flow core (``engine.pipeline.flow``) in a background thread of this
process and return a handle of one shape (``handle.PipelineHandle``).  ``resume=True``
continues a pipeline whose driver went away: the sink (one with stable commits, a
``ParquetSink``) keeps what the earlier run committed, and batches it holds are not
delivered again; the source and the filters must be deterministic, so that the same
batches get the same names (keyed stages split batches by their replica count, so those
must be the same too: a keyed stage that autoscales is refused).
"""

from __future__ import annotations

from engine.errors import SpecError
from engine.io.sources import LiveFeed
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
        return InlinePipelineHandle(InlineRun(pipeline, resume=options.resume))


class RayExecutor:
    """Runs a pipeline on the connected Ray cluster: replica actors and bounded pipes."""

    def start(self, pipeline: Pipeline, options: RunOptions) -> PipelineHandle:
        """Start ``pipeline`` and return its handle at once."""
        from engine.pipeline.ray_executor import RayPipelineExecutor

        _check(pipeline, options)
        return RayPipelineExecutor().start(pipeline, options.resume)


def _check(pipeline: Pipeline, options: RunOptions) -> None:
    if not isinstance(pipeline, Pipeline):
        raise SpecError(f"a pipeline executor needs a Pipeline, got {type(pipeline).__name__}")
    if options.chaos is not None:
        raise SpecError("pipelines take no chaos option")
    if options.resume:
        check_resumable(pipeline)


def check_resumable(pipeline: Pipeline) -> None:
    """Raise ``SpecError`` (one line) unless ``pipeline`` can be run with ``resume=True``."""
    if not pipeline.sink.stable_commits:
        raise SpecError(f"resume needs a sink that remembers its commits (a ParquetSink); this pipeline writes to "
                        f"a {type(pipeline.sink).__name__}")
    for stage in pipeline.stages:
        if stage.key is not None and stage.autoscale is not None:
            # Batch names follow the keyed split, i.e. this stage's replica count.
            raise SpecError(f"resume needs fixed replica counts on keyed stages; stage {stage.id!r} autoscales")


def resume_blocker(pipeline: Pipeline) -> str | None:
    """Why ``pipeline`` cannot be run again with ``resume=True`` after its cluster was lost
    (None: it can)."""
    if isinstance(pipeline.source, LiveFeed):
        return "its source is a LiveFeed (batches pushed before the loss are not read again): push them again"
    try:
        check_resumable(pipeline)
    except SpecError as error:
        return str(error)
    return None


def pipeline_name(pipeline: Pipeline) -> str:
    """How one-line messages name a pipeline: its stage ids, ``"double->odd"``."""
    return "->".join(stage.id for stage in pipeline.stages)


EXECUTORS = {"inline": InlineExecutor, "ray": RayExecutor}
