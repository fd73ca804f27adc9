"""What a finished MapReduce job hands back."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from engine.common.dead_letters import DeadLetterStore
from engine.io.convert import ray_dataset_from_parquet, to_pandas, to_polars
from engine.io.parts import read_parts
from engine.mapreduce.rules import dead_letter_dir

DEAD_RECORD_SCHEMA = pa.schema([
    ("step", pa.string()),
    ("location", pa.string()),
    ("offset", pa.int64()),
    ("error", pa.string()),
    ("record", pa.binary()),
])


@dataclass
class JobResult:
    """A completed job: where its parts are, its counters and how long it took.

    ``elapsed_s`` runs from submission to the commit of the result (on Ray, starting the
    job's masters and workers, a takeover or a restart of the embedded cluster count; the
    master's own clock is ``details["master_elapsed_s"]``).

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

    @staticmethod
    def from_summary(name: str, output: str, summary: dict) -> "JobResult":
        """The result of a job from the summary its executor made when it finished."""
        return JobResult(name, output, Counter(summary["counters"]), summary["elapsed_s"], summary["map_tasks"],
                         summary["reduce_tasks"], dict(summary["attempts"]), summary)

    def table(self) -> pa.Table:
        """The whole result as one table (parts concatenated in partition order)."""
        return read_parts(self.output)

    def to_arrow(self) -> pa.Table:
        """The result as a ``pyarrow.Table``: the same as ``table()`` (its parts read with pyarrow and
        concatenated without a copy)."""
        return self.table()

    def to_pandas(self) -> Any:
        """The result as a ``pandas.DataFrame`` (``engine.io.convert.to_pandas``: numeric
        columns without nulls in one part are views of the Arrow data, other columns are
        copied); ``MissingDependencyError`` without pandas."""
        return to_pandas(self.table(), "JobResult.to_pandas()")

    def to_polars(self) -> Any:
        """The result as a ``polars.DataFrame`` (``engine.io.convert.to_polars``: the Arrow
        buffers of numeric, boolean and temporal columns are adopted, strings are
        converted); ``MissingDependencyError`` without polars."""
        return to_polars(self.table(), "JobResult.to_polars()")

    def to_ray_dataset(self) -> Any:
        """The result as a ``ray.data.Dataset`` read straight from the part files with
        ``ray.data.read_parquet`` on the cluster (no row passes through this process; the
        cluster's nodes must see the output directory).  Row order is Ray Data's, not the
        parts'.  Needs ``engine.connect()`` first (``NotConnectedError``); stops the
        engine's idle workers, whose CPUs the read tasks need."""
        return ray_dataset_from_parquet(self.output, "JobResult.to_ray_dataset()", self.details.get("job_id"))

    def dead_letter_store(self) -> DeadLetterStore:
        """The job's dead-letter store (replay its letters, or read a step's rows with
        ``engine.DeadLetterSource(result.dead_letter_store().directory, step)``)."""
        return DeadLetterStore(dead_letter_dir(self.output))

    def dead_letters(self) -> pa.Table:
        """Every record the job skipped, one row each: step ("read", "map", "reduce"),
        location (file, table or partition), offset (byte offset or row number), the error,
        and the record (raw line bytes, or the row as JSON)."""
        if not os.path.isdir(dead_letter_dir(self.output)):
            return DEAD_RECORD_SCHEMA.empty_table()
        store = self.dead_letter_store()
        records: list[dict] = []
        for letter in store.list().to_pylist():
            source = json.loads(letter["source"])
            rows = store.rows(letter["letter_id"])
            offsets = source.get("offsets") or list(range(rows.num_rows))
            reasons = source.get("reasons")
            error = f"{letter['error_type'].rsplit('.', 1)[-1]}: {letter['error_message']}"
            for index, row in enumerate(rows.to_pylist()):  # only skipped records: never many
                records.append({"step": letter["step"], "location": source.get("location", ""),
                                "offset": int(offsets[index]), "error": reasons[index] if reasons else error,
                                "record": _record_bytes(row)})
        return pa.Table.from_pylist(records, schema=DEAD_RECORD_SCHEMA)

    def throughput_mb_s(self) -> float:
        """Input megabytes (10**6 bytes) per second of job time."""
        return self.counters.get("map_input_bytes", 0) / 1e6 / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _record_bytes(row: dict) -> bytes:
    """A skipped record as bytes: a raw line as it was read, any other row as JSON."""
    if len(row) == 1:
        value = next(iter(row.values()))
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
    return json.dumps(row, default=str, sort_keys=True).encode()
