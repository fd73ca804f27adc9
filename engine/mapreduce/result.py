"""What a finished MapReduce job hands back."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from engine.io.parts import read_parts
from engine.mapreduce.tasks import DEAD_LETTER_SCHEMA, DEAD_LETTERS_FILE


@dataclass
class JobResult:
    """A completed job: where its parts are, its counters and how long it took.

    ``counters`` holds the built-in counters (``map_input_records``,
    ``map_input_bytes``, ``map_output_records``, ``reduce_input_records``,
    ``reduce_output_records``, ``invalid_input_records`` (lines that are not UTF-8),
    ``bad_records_skipped`` (records user code kept failing on)) and every user counter, each
    counted once per task however often the task ran.
    """

    name: str
    output: str
    counters: Counter
    elapsed_s: float
    map_tasks: int
    reduce_tasks: int
    attempts: dict[str, int] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def table(self) -> pa.Table:
        """The whole result as one table (parts concatenated in partition order)."""
        return read_parts(self.output)

    def dead_letters(self) -> pa.Table:
        """Bad records the job skipped: stage, source, offset, reason, record bytes."""
        path = os.path.join(self.output, DEAD_LETTERS_FILE)
        if not os.path.exists(path):
            return DEAD_LETTER_SCHEMA.empty_table()
        return pq.read_table(path)

    def throughput_mb_s(self) -> float:
        """Input megabytes (10**6 bytes) per second of job time."""
        return self.counters.get("map_input_bytes", 0) / 1e6 / self.elapsed_s if self.elapsed_s > 0 else 0.0
