"""Bad-input cases fed through the public API on the inline executor: MapReduce jobs and
``engine.count_words`` (the pipeline and Lambda cases are in bench/bad_input_streams.py).

Each case function takes a fresh scratch directory and returns an ``Outcome``; correct
results are compared with plain-Python counts, never with the engine itself.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.bad_input import Case, Outcome, handled, raised
from bench.bad_input_streams import STREAM_CASES

WAIT_S = 60.0  # a result later than this is a hang
UNIT = "tests/unit/test_bad_input_mapreduce.py::"


def _engine() -> Any:
    import engine

    return engine


def words_of(data: bytes) -> dict[str, int]:
    """Plain-Python word counts of the valid UTF-8 lines of ``data`` (lines end at \\n)."""
    counts: Counter[str] = Counter()
    for line in data.split(b"\n"):
        try:
            counts.update(line.decode("utf-8").split())
        except UnicodeDecodeError:
            continue
    return dict(counts)


def counts_of(table: pa.Table) -> dict[str, int]:
    """A word-count result table as a dict."""
    return dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist()))


def _wordcount(inputs: list[Path], output: Path, **kwargs: Any) -> Any:
    from jobs.wordcount_job import wordcount_job

    return wordcount_job([str(p) for p in inputs], str(output), **kwargs)


def _run(job: Any, **kwargs: Any) -> Any:
    return _engine().run(job, "inline", **kwargs).result(timeout_s=WAIT_S)


def invalid_utf8_over_the_limit(directory: Path) -> Outcome:
    """2 of 10 lines invalid UTF-8 with at most 10 % bad records allowed."""
    (directory / "in").mkdir()
    (directory / "in" / "a.txt").write_bytes(b"good words\n" * 8 + b"\xff bad\n\xfe\xfd\n")
    job = _wordcount([directory / "in"], directory / "out",
                     options=_engine().JobOptions(max_bad_record_fraction=0.1))
    return raised(lambda: _run(job))


def map_failing_on_every_row(directory: Path) -> Outcome:
    """A map that raises on every row of a 20-task job must stop the job early."""
    engine = _engine()
    seen: list[int] = []

    def refuse(table: pa.Table) -> pa.Table:
        if table.num_rows == 0:  # the engine learns the output schema from an empty call
            return table
        seen.append(int(table.column("split")[0].as_py()))
        raise ValueError("no row is welcome")

    rows = 2000
    table = pa.table({"key": pa.array([i % 7 for i in range(rows)], pa.int64()), "value": pa.array([1] * rows),
                      "split": pa.array([i * 20 // rows for i in range(rows)], pa.int64())})
    job = engine.MapReduceJob(name="hopeless", source=engine.TableSource(table, batch_rows=100), map=refuse,
                              reduce=engine.GroupByAggregate("key", {"value": "sum"}), keys="key", reducers=2,
                              output=str(directory / "out"))
    outcome = raised(lambda: _run(job))
    if len(set(seen)) > 2:
        outcome.problems.append(f"did not stop early: the map ran over {len(set(seen))} of 20 tasks")
    return outcome


def _leftovers(directory: Path) -> tuple[Path, Path, Outcome]:
    (directory / "in").mkdir()
    source = directory / "in" / "a.txt"
    source.write_bytes(b"x y\n\xff\n" * 20)
    out = directory / "out"
    first = raised(lambda: _run(_wordcount([directory / "in"], out, split_size=8)))
    return source, out, first


def rerun_over_leftovers_without_overwrite(directory: Path) -> Outcome:
    """A job failed (too many bad lines) and left dead letters; rerun it, no --overwrite."""
    _, out, first = _leftovers(directory)
    if first.problems:  # the first run was meant to fail and leave its dead letters
        return first
    before = sorted(p.name for p in out.iterdir())
    job = _wordcount([directory / "in"], out, split_size=8,
                     options=_engine().JobOptions(max_bad_record_fraction=0.5))
    outcome = raised(lambda: _run(job))
    if outcome.problems == ["no error: the bad input passed silently"]:  # running over leftovers is fine too
        return Outcome(gets="handled: the rerun over the leftovers succeeded")
    return outcome.check_kept(sorted(p.name for p in out.iterdir()) == before, "the failed run's files")


def rerun_over_leftovers_with_overwrite(directory: Path) -> Outcome:
    """The same leftovers; the rerun has ``overwrite=True`` and a 50 % bad-record limit."""
    source, out, first = _leftovers(directory)
    if first.problems:  # the first run was meant to fail and leave its dead letters
        return first
    job = _wordcount([directory / "in"], out, split_size=8,
                     options=_engine().JobOptions(overwrite=True, max_bad_record_fraction=0.5))
    result = _run(job)
    letters = result.dead_letters()
    exact = counts_of(result.table()) == words_of(source.read_bytes()) and letters.num_rows == 20
    reason = letters.column("error")[0].as_py() if letters.num_rows else "none"
    return handled(f"first run {first.gets}; rerun succeeded, exact counts, {letters.num_rows} dead letters "
                   f"(dead letter: {reason})", exact, f"{letters.num_rows} dead letters or counts differ")


def reduce_parts_with_different_schemas(directory: Path) -> Outcome:
    """A reduce returning int64 counts for some partitions and float64 for others."""
    engine = _engine()
    total = engine.GroupByAggregate("key", {"value": "sum"})

    def typed_per_partition(table: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        summed = total(table)
        odd = summed.num_rows and summed.column("key")[0].as_py() % 2 == 1
        return summed.set_column(1, "value", pc.cast(summed.column("value"), pa.float64())) if odd else summed

    table = pa.table({"key": pa.array(range(40), pa.int64()), "value": pa.array([1] * 40, pa.int64())})
    job = engine.MapReduceJob(name="mixed", source=engine.TableSource(table, batch_rows=10), map=lambda t: t,
                              reduce=typed_per_partition, keys="key", reducers=8, output=str(directory / "out"))
    outcome = raised(lambda: _run(job))
    if (directory / "out" / "_SUCCESS").exists():
        outcome.problems.append("_SUCCESS written over parts that do not read back as one result")
    return outcome


def reduce_dropping_the_key(directory: Path) -> Outcome:
    """A reduce whose output lacks the key column."""
    engine = _engine()
    total = engine.GroupByAggregate("key", {"value": "sum"})
    table = pa.table({"key": pa.array(range(10), pa.int64()), "value": pa.array([1] * 10, pa.int64())})
    job = engine.MapReduceJob(name="keyless", source=engine.TableSource(table), map=lambda t: t,
                              reduce=lambda t: total(t).drop_columns(["key"]), keys="key", reducers=1,
                              output=str(directory / "out"))
    return raised(lambda: _run(job))


def input_directory_without_files(directory: Path) -> Outcome:
    """A word count over an empty directory."""
    (directory / "empty").mkdir()
    return raised(lambda: _run(_wordcount([directory / "empty"], directory / "out")))


def missing_input(directory: Path) -> Outcome:
    """A word count over a path that does not exist."""
    return raised(lambda: _run(_wordcount([directory / "nope.txt"], directory / "out")))


def line_larger_than_the_split(directory: Path) -> Outcome:
    """One 400 KB line among short ones, split size 4 KiB (the line spans ~100 splits)."""
    data = b"a b\n" * 500 + b"w " * 200_000 + b"\n" + b"c d\n" * 500
    (directory / "in.txt").write_bytes(data)
    result = _run(_wordcount([directory / "in.txt"], directory / "out", split_size=4096))
    got = counts_of(result.table())
    return handled("exact counts; the long line is counted once, by the split it starts in",
                   got == words_of(data), f"w={got.get('w')} (expected 200000)")


def line_longer_than_max_line_bytes(directory: Path) -> Outcome:
    """A 5,000-byte line, longer than both ``max_line_bytes=1024`` and a 256-byte batch: a bad
    record (its first KiB kept), never held in memory."""
    engine = _engine()
    from jobs.wordcount_job import SUM_COUNTS, count_words_in_lines

    data = b"a b\n" * 20 + b"z" * 4999 + b"\n" + b"c\n" * 20
    (directory / "in.txt").write_bytes(data)
    job = engine.MapReduceJob(
        name="long-line", source=engine.TextSource([str(directory / "in.txt")], split_size=64, batch_size=256,
                                                 max_line_bytes=1024),
        map=count_words_in_lines, reduce=SUM_COUNTS, keys="word", reducers=1, output=str(directory / "out"),
        options=engine.JobOptions(max_bad_record_fraction=0.5))
    result = _run(job)
    letters = result.dead_letters()
    if letters.num_rows != 1 or counts_of(result.table()) != {"a": 20, "b": 20, "c": 20}:
        words = sorted(word[:20] for word in counts_of(result.table()))
        return handled("", False, f"{letters.num_rows} dead letters; words {words}")
    return Outcome(gets=f"dead letter: {letters.column('error')[0].as_py()}")


def resume_on_the_inline_executor(directory: Path) -> Outcome:
    """``engine.run(job, "inline", resume=True)``."""
    (directory / "in.txt").write_text("a b\n")
    return raised(lambda: _engine().run(_wordcount([directory / "in.txt"], directory / "out"), "inline",
                                        resume=True))


def start_with_workers_zero(directory: Path) -> Outcome:
    """``JobOptions(start_with_workers=0)``."""
    (directory / "in.txt").write_text("a b\n")
    return raised(lambda: _wordcount([directory / "in.txt"], directory / "out",
                                     options=_engine().JobOptions(start_with_workers=0)))


def resume_after_the_input_changed(directory: Path) -> Outcome:
    """A driver dies mid-job (``tests.fault.resume_job``), the input grows, the job is
    resumed: it must never mix old parts with new data; either it starts over and counts
    the new data exactly, or it refuses in one line and leaves the old parts alone."""
    import subprocess
    import sys

    engine = _engine()
    from tests.fault.resume_job import resumable_job

    (directory / "in").mkdir()
    lines = [f"w{i % 97} v{i % 13} common" for i in range(4000)]
    (directory / "in" / "a.txt").write_text("\n".join(lines) + "\n")
    root = Path(__file__).resolve().parents[1]
    gone = subprocess.run([sys.executable, "-m", "tests.fault.resume_job", str(directory / "in"),
                           str(directory / "out")], cwd=root, capture_output=True, text=True, timeout=300)
    if gone.returncode != 3:
        return Outcome(gets=f"setup failed: the first driver exited {gone.returncode}",
                       problems=[f"setup: {gone.stderr.strip().splitlines()[-1:]}"])
    with open(directory / "in" / "a.txt", "a") as more:
        more.write("added words here\n" * 300)
    parts = sorted(p.name for p in (directory / "out").glob("part-*"))
    job = resumable_job(str(directory / "in"), str(directory / "out"))
    results: list[Any] = []
    engine.connect(num_cpus=2)
    try:
        outcome = raised(lambda: results.append(engine.run(job, resume=True).result(timeout_s=240)))
    finally:
        engine.shutdown()
    if not results:  # refused: its snapshot no longer fits the job; the old parts must be untouched
        return outcome.check_kept(sorted(p.name for p in (directory / "out").glob("part-*")) == parts,
                                  "the parts of the interrupted run")
    got = counts_of(results[0].table())
    return handled("the resume started over (fingerprint changed) and counted the new data exactly",
                   got == words_of((directory / "in" / "a.txt").read_bytes()),
                   f"counts mix old and new data (added={got.get('added')}, expected 300)")


def count_words_without_trailing_whitespace(directory: Path) -> Outcome:
    """``engine.count_words(pa.array(["a b", "c d", "ab", "ab"]))``."""
    values = ["a b", "c d", "ab", "ab"]
    table = _engine().count_words(pa.array(values))
    got = dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist()))
    expected = dict(Counter(w for v in values for w in v.split()))
    return handled(f"{got} (values never joined)", got == expected, f"{got}, expected {expected}")


def count_words_on_numbers(directory: Path) -> Outcome:
    """``engine.count_words(pa.array([1, 2]))``."""
    return raised(lambda: _engine().count_words(pa.array([1, 2])))


MR_CASES = [
    Case("mapreduce: invalid UTF-8 lines over the bad-record limit", "API: wordcount_job, 2 of 10 lines invalid, "
         "max_bad_record_fraction=0.1", invalid_utf8_over_the_limit,
         UNIT + "test_invalid_utf8_lines_count_against_the_bad_record_limit"),
    Case("mapreduce: a map that fails on every row", "API: MapReduceJob over TableSource (20 tasks), map raises",
         map_failing_on_every_row, UNIT + "test_a_map_that_fails_on_every_row_stops_the_job_after_its_first_tasks"),
    Case("mapreduce: rerun over a failed job's leftovers", "API: the failed job's output dir, rerun without "
         "overwrite", rerun_over_leftovers_without_overwrite, "not tested"),
    Case("mapreduce: rerun over leftovers with overwrite", "API: JobOptions(overwrite=True) over a failed job's "
         "output", rerun_over_leftovers_with_overwrite,
         UNIT + "test_a_failed_jobs_leftovers_do_not_block_a_rerun_with_overwrite"),
    Case("mapreduce: reduce parts with different schemas", "API: reduce returns int64 or float64 per partition",
         reduce_parts_with_different_schemas,
         UNIT + "test_reduce_parts_with_different_schemas_fail_the_job_before_success"),
    Case("mapreduce: reduce drops the key column", "API: reduce output without 'key'", reduce_dropping_the_key,
         UNIT + "test_a_reduce_that_drops_the_key_column_is_named"),
    Case("mapreduce: input directory with no files", "API: wordcount_job([empty dir])", input_directory_without_files,
         UNIT + "test_an_input_directory_without_files_is_named"),
    Case("mapreduce: missing input", "API: wordcount_job([missing path])", missing_input,
         "tests/unit/test_text_splits.py::test_missing_input_is_named"),
    Case("mapreduce: a line larger than the split size", "API: wordcount_job, 400 KB line, split_size=4096",
         line_larger_than_the_split, "tests/unit/test_text_splits.py::test_splits_cover_every_line_once"),
    Case("mapreduce: a line longer than max_line_bytes", "API: TextSource(batch_size=256, max_line_bytes=1024), "
         "a 5,000-byte line",
         line_longer_than_max_line_bytes, "tests/unit/test_text_splits.py::"
         "test_a_line_longer_than_max_line_bytes_is_skipped_as_a_bad_line_with_a_preview"),
    Case("mapreduce: resume on the inline executor", "API: engine.run(job, 'inline', resume=True)",
         resume_on_the_inline_executor, "not tested"),
    Case("mapreduce: start_with_workers=0", "API: JobOptions(start_with_workers=0)", start_with_workers_zero,
         UNIT + "test_start_with_workers_must_be_none_or_a_positive_count"),
    Case("mapreduce: resume after the input data changed", "API + Ray: driver killed mid-job, input appended, "
         "engine.run(job, resume=True)", resume_after_the_input_changed,
         "tests/integration/test_mapreduce_ray.py::"
         "test_a_resume_after_the_input_changed_starts_over_instead_of_mixing_parts", ray=True),
    Case("count_words: values without trailing whitespace", "API: engine.count_words(['a b', 'c d', ...])",
         count_words_without_trailing_whitespace,
         "tests/unit/test_text_kernel.py::test_values_never_join_without_trailing_whitespace"),
    Case("count_words: a non-string column", "API: engine.count_words(pa.array([1, 2]))", count_words_on_numbers,
         "tests/unit/test_text_kernel.py::test_non_string_input_is_refused"),
]

API_CASES = [*MR_CASES, *STREAM_CASES]
