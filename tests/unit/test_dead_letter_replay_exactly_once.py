"""Unit tests: dead-letter replay into a sink with stable commits is exactly-once, even when
the replayer dies between the sink's commit and the replay marker; ParquetSink refuses an
earlier run's parts unless told to clear them (or to add to them)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import engine
import engine.common.dead_letter_replay as replay_module
from engine import CallbackSink, CollectSink, ParquetSink, Pipeline, PipelineOptions, Stage, TableSource, \
    replay_dead_letters
from engine.common.dead_letters import DeadLetterStore, replay_batch_name
from engine.common.retry import RetryPolicy
from engine.errors import OutputExistsError, PipelineFailedError
from engine.io.sinks import SinkWriter

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NO_WAIT = RetryPolicy(max_attempts=2, base_delay_s=0.0, jitter=0.0)
LETTER_ROWS = [[1, 2, 3], [4], [5, 6], [7, 8, 9, 10], [11]]


class Crash(BaseException):
    """Stands for the replayer's process dying (not an Exception: nothing catches it)."""


def _store_with_letters(directory: Path) -> DeadLetterStore:
    store = DeadLetterStore(directory)
    for values in LETTER_ROWS:
        store.add("load", pa.table({"k": pa.array(values, pa.int64())}), "sink was down")
    return store


def _rows_in(directory: Path) -> Counter:
    return Counter(pq.read_table(directory)["k"].to_pylist())


def _expected() -> Counter:
    return Counter(value for values in LETTER_ROWS for value in values)


@dataclass(frozen=True)
class CrashAfterCommits(ParquetSink):
    """A ParquetSink whose writer dies right after its ``commits``-th commit."""

    commits: int = 1

    def open(self, resume: bool = False) -> SinkWriter:
        inner, limit = super().open(resume), self.commits
        writes = []

        class Writer(SinkWriter):
            def write(self, batch_name: str, table: pa.Table) -> None:
                inner.write(batch_name, table)
                writes.append(batch_name)
                if len(writes) == limit:
                    raise Crash()

            def committed(self) -> frozenset[str]:
                return inner.committed()

        return Writer()


def test_a_replay_that_dies_between_commit_and_marker_delivers_nothing_twice(tmp_path: Path) -> None:
    store = _store_with_letters(tmp_path / "dead")
    letters = store.list("load")["letter_id"].to_pylist()
    out = tmp_path / "out"
    with pytest.raises(Crash):
        store.replay_into("load", CrashAfterCommits(str(out), commits=2))
    # The second letter's part is committed, its marker never written.
    assert DeadLetterStore(tmp_path / "dead").list("load")["letter_id"].to_pylist() == letters[1:]
    assert (out / f"part-{replay_batch_name(letters[1])}.parquet").exists()

    again = DeadLetterStore(tmp_path / "dead").replay_into("load", ParquetSink(str(out)))
    assert again.recovered_ids == [letters[1]]  # found committed: only marked
    assert again.replayed_ids == letters[2:] and again.replayed_rows == 7
    assert _rows_in(out) == _expected()  # every row exactly once
    assert (out / "_SUCCESS").exists()
    third = DeadLetterStore(tmp_path / "dead").replay_into("load", ParquetSink(str(out)))
    assert third.replayed_letters == 0 and third.recovered_ids == []
    assert _rows_in(out) == _expected() and store.count("load") == 0


def test_a_replayer_process_killed_after_a_commit_is_taken_over_exactly_once(tmp_path: Path) -> None:
    store = _store_with_letters(tmp_path / "dead")
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from engine import ParquetSink
        from engine.common.dead_letters import DeadLetterStore
        import engine.io.sinks as sinks

        commit = sinks._ParquetWriter.write
        seen = []
        def write_then_die(self, name, table):
            commit(self, name, table)
            seen.append(name)
            if len(seen) == 3:
                os._exit(7)  # killed between the sink's commit and the replay marker
        sinks._ParquetWriter.write = write_then_die
        DeadLetterStore({str(tmp_path / "dead")!r}).replay_into("load", ParquetSink({str(out)!r}))
    """)
    died = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert died.returncode == 7, died.stderr[-2000:]
    assert len(list((tmp_path / "dead").glob("*.claim"))) == 1  # left behind by the dead replayer
    assert len(list(out.glob("part-*.parquet"))) == 3 and not (out / "_SUCCESS").exists()

    report = DeadLetterStore(tmp_path / "dead", claim_timeout_s=3600).replay_into("load", ParquetSink(str(out)))
    assert len(report.recovered_ids) == 1 and report.replayed_letters == 2 and report.skipped_letters == []
    assert _rows_in(out) == _expected()
    assert store.count("load") == 0 and not list((tmp_path / "dead").glob("*.claim"))


def test_replay_into_a_transform_and_a_sink_without_stable_commits(tmp_path: Path) -> None:
    store = _store_with_letters(tmp_path / "dead")
    with pytest.raises(ValueError, match="stable batch commits.*CallbackSink.*at-least-once"):
        store.replay_into("load", CallbackSink(lambda table: None))
    report = store.replay_into("load", ParquetSink(str(tmp_path / "out")),
                               transform=lambda rows: rows.filter(pc.greater(rows["k"], 5)))
    assert report.replayed_letters == 5  # a letter with nothing left to write counts as replayed
    assert _rows_in(tmp_path / "out") == Counter(v for values in LETTER_ROWS for v in values if v > 5)


def check(batch: pa.Table) -> pa.Table:
    if (batch["x"].to_numpy() % 7 == 0).any():
        raise ValueError("multiple of 7")
    return batch


def double_all_but_21(batch: pa.Table) -> pa.Table:
    if pc.any(pc.equal(batch["x"], 21)).as_py():
        raise ValueError("21 cannot be doubled")
    return batch.append_column("y", pc.multiply(batch["x"], 2))


def test_pipeline_replay_into_its_parquet_sink_survives_a_crash_before_the_marker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, dead = tmp_path / "out", tmp_path / "dead"
    pipeline = Pipeline(TableSource(pa.table({"x": pa.array(range(50), pa.int64())}), 10),
                        [Stage("check", check, retry=NO_WAIT), Stage("double", double_all_but_21, retry=NO_WAIT)],
                        ParquetSink(str(out)), PipelineOptions(dead_letter_dir=str(dead)))
    engine.run(pipeline, "inline").result(timeout_s=60)
    assert sorted(pq.read_table(out)["x"].to_pylist()) == [x for x in range(50) if x % 7]

    real_mark, marks = replay_module._mark, []

    def crash_on_third_marker(marker: Path, letter_id: str) -> None:
        marks.append(letter_id)
        if len(marks) == 3:
            raise Crash()
        real_mark(marker, letter_id)

    monkeypatch.setattr(replay_module, "_mark", crash_on_third_marker)
    with pytest.raises(Crash):
        replay_dead_letters(pipeline, "check", fixed_fn=lambda batch: batch)
    monkeypatch.setattr(replay_module, "_mark", real_mark)
    again = replay_dead_letters(pipeline, "check", fixed_fn=lambda batch: batch)
    assert len(again.report.recovered_ids) == 1

    table = pq.read_table(out)
    x = table["x"].to_pylist()
    assert Counter(x) == Counter(v for v in range(50) if v != 21)  # every row once; 21 fails "double"
    assert table["y"].to_pylist() == [2 * v for v in x]
    store = DeadLetterStore(dead)
    assert store.count("check") == 0
    assert store.list("double")["row_count"].to_pylist() == [1]  # one letter for 21, however often replayed
    assert store.all_rows("double")["x"].to_pylist() == [21]


def test_a_parquet_sink_refuses_an_earlier_runs_parts_unless_told(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = pa.table({"x": pa.array([1, 2, 3], pa.int64())})
    second = pa.table({"x": pa.array([10, 20], pa.int64())})
    engine.run(Pipeline(TableSource(first, 1), [Stage("id", lambda b: b)], ParquetSink(str(out))), "inline").result()
    handle = engine.run(Pipeline(TableSource(second), [Stage("id", lambda b: b)], ParquetSink(str(out))), "inline")
    with pytest.raises(PipelineFailedError, match=f"^sink ParquetSink failed to open: OutputExistsError: output "
                                                  f"directory already holds a result: {out} "):
        handle.result(timeout_s=60)
    assert sorted(pq.read_table(out)["x"].to_pylist()) == [1, 2, 3]  # untouched
    cleared = ParquetSink(str(out), overwrite=True)
    engine.run(Pipeline(TableSource(second), [Stage("id", lambda b: b)], cleared), "inline").result(timeout_s=60)
    assert sorted(pq.read_table(out)["x"].to_pylist()) == [10, 20]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=f"not a job result: {out} \\(notes.txt\\)"):
        cleared.open()
    with pytest.raises(ValueError, match="CollectSink cannot resume"):
        CollectSink().open(resume=True)


def test_a_resumed_parquet_sink_keeps_its_parts_and_drops_torn_writes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    writer = ParquetSink(str(out)).open()
    writer.write("a", pa.table({"x": [1]}))
    writer.close()
    (out / ".tmp-0123-part-b.parquet").write_bytes(b"torn")
    reopened = ParquetSink(str(out)).open(resume=True)
    assert reopened.committed() == {"a"} and not (out / "_SUCCESS").exists()
    assert sorted(os.listdir(out)) == ["_run.json", "part-a.parquet"]
    assert reopened.run_token() == writer.run_token()  # a resumed run is the same run
    reopened.write("b", pa.table({"x": [2]}))
    assert reopened.committed() == {"a", "b"}
    replaced = ParquetSink(str(out), overwrite=True).open()
    assert replaced.committed() == set() and replaced.run_token() != writer.run_token()
    (out / "_run.json").write_text('{"run": "../../x"}')
    with pytest.raises(OutputExistsError, match="_run.json' holds no run token"):
        ParquetSink(str(out)).open(resume=True)
