"""The inline executor: runs a pipeline sequentially in this process, without Ray.

It is the oracle the Ray executor is tested against, and a debugging aid: the same
filter code (retries, row isolation, dead letters) runs batch by batch, in source order.
"""

from __future__ import annotations

import time

from engine.pipeline.dead_letters import DeadLetterRecorder, outcome_dead
from engine.pipeline.filtering import apply_filter
from engine.pipeline.result import PipelineResult, StageMetrics
from engine.pipeline.delivery import batch_name, commit
from engine.pipeline.spec import Pipeline


class LocalPipelineExecutor:
    """Runs a pipeline inline: one batch at a time through every stage, then the sink."""

    def run(self, pipeline: Pipeline) -> PipelineResult:
        """Run ``pipeline`` to completion and return its result (sink output, metrics)."""
        started = time.perf_counter()
        metrics = {stage.id: StageMetrics(stage.id, replicas=1) for stage in pipeline.stages}
        metrics["sink"] = StageMetrics("sink", replicas=1)
        recorder = DeadLetterRecorder(pipeline.options.dead_letter_dir)
        writer = pipeline.sink.open()
        for seq, batch in enumerate(pipeline.source.batches()):
            if batch.num_rows == 0:
                continue
            current = batch
            for stage in pipeline.stages:
                counters = metrics[stage.id]
                counters.note_depth(1)
                counters.batches_in += 1
                counters.rows_in += current.num_rows
                call_started = time.perf_counter()
                outcome = apply_filter(stage.fn, current, stage.retry, stage.id)
                counters.busy_s += time.perf_counter() - call_started
                counters.errors += outcome.errors
                counters.dead_letters += recorder.record_outcome(stage.id, outcome_dead(outcome), {"batch": seq})
                counters.note_depth(0)
                if outcome.table is None:
                    break
                counters.batches_out += 1
                counters.rows_out += outcome.table.num_rows
                current = outcome.table
            else:
                sink = metrics["sink"]
                commit(writer, batch_name((seq,)), current, pipeline.options.sink_retry)
                sink.batches_in += 1
                sink.rows_in += current.num_rows
                sink.batches_out += 1
                sink.rows_out += current.num_rows
        table = writer.close()
        return PipelineResult(
            status="completed",
            metrics=metrics,
            table=table,
            elapsed_s=time.perf_counter() - started,
            dead_letter_ids=list(recorder.letter_ids),
            unstored_dead=list(recorder.unstored),
        )

