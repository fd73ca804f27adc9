"""Pipeline under the loss of a stage replica (``bench faults``, pattern pipeline).

The 3-stage pipeline of ``bench.pipeline`` (parse with 2 replicas, filter, project) over
generated CSV lines into a ``CollectSink``.  Once half of the batches have been parsed,
one replica's process is SIGKILLed: one of parse's two, or the only replica of
project.  Exact means the sink holds every row of a plain-pyarrow oracle (the same three
functions applied to the whole table in the driver) exactly once.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa

from bench.faults_common import embedded_cluster, guarded, kill_actor, pattern_rows, wait_until
from bench.pipeline import canonical, keep_rows, make_lines, parse, project

PATTERN = "pipeline"


@dataclass(frozen=True)
class Paced:
    """A stage function that sleeps ``delay_s`` per batch first (``--quick``: so the run
    lasts long enough for a kill to land mid-run)."""

    fn: Callable[[pa.Table], pa.Table]
    delay_s: float

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.fn(batch)


def _pipeline(lines: pa.Table, batch_rows: int, delay_s: float) -> Any:
    from engine import CollectSink, Pipeline, Stage, TableSource

    stages = [Stage("parse", Paced(parse, delay_s), replicas=2), Stage("filter", keep_rows),
              Stage("project", project)]
    return Pipeline(TableSource(lines, batch_rows), stages, CollectSink())


def _one_run(lines: pa.Table, batch_rows: int, delay_s: float, victim: str | None, index: int,
             expected: pa.Table) -> dict:
    import engine

    batches = -(-lines.num_rows // batch_rows)
    started = time.perf_counter()
    handle = engine.run(_pipeline(lines, batch_rows, delay_s))
    note = ""
    if victim is not None:
        wait_until(lambda: handle.done() or handle.metrics()["parse"].batches_out >= batches // 2, timeout_s=600)
        note = ("the run ended before the kill" if handle.done() else
                f"{victim} replica {index} pid {kill_actor(handle.replica_actors(victim)[index])} SIGKILLed")
    result = handle.result(timeout_s=600)
    seconds = time.perf_counter() - started
    table = canonical(result.table)
    ids = table.column("id")
    once = len(ids) == len(ids.unique())
    return {"seconds": seconds, "exact": once and table.equals(expected), "rows": table.num_rows,
            "duplicates": len(ids) - len(ids.unique()), "kill": note,
            "replica_restarts": {s: m.replica_restarts for s, m in result.metrics.items() if m.replica_restarts}}


def run(args: argparse.Namespace) -> list[dict]:
    """Undisturbed, a parse replica killed, the project replica killed; one row each."""
    rows, batch_rows, delay_s = (40_000, 1_000, 0.03) if args.quick else (4_000_000, 40_000, 0.0)
    lines = make_lines(rows)
    expected = canonical(project(keep_rows(parse(lines))))  # the oracle: no engine, one call each
    scenarios = {"undisturbed": (None, 0), "parse replica (1 of 2) killed at 50% of batches": ("parse", 0),
                 "project's only replica killed at 50% of batches": ("project", 0)}
    runs: dict[str, list[dict]] = {name: [] for name in scenarios}
    with embedded_cluster(args.cpus):
        import engine

        engine.run(_pipeline(lines.slice(0, 4 * batch_rows), batch_rows, 0.0)).result(timeout_s=600)  # warm-up
        for repeat in range(args.repeat):
            for name, (victim, index) in scenarios.items():
                runs[name].append(guarded(name, repeat, lambda: _one_run(lines, batch_rows, delay_s, victim, index,
                                                                         expected)))
    def notes_of(last: dict) -> str:
        notes = (f"{rows:,} lines in {-(-rows // batch_rows)} batches; sink rows {last['rows']:,} "
                 f"(oracle {expected.num_rows:,}), duplicates {last['duplicates']}")
        if last["kill"]:
            notes = f"{last['kill']}; restarts {last['replica_restarts']}; {notes}"
        return notes

    return pattern_rows(PATTERN, runs, notes_of)
