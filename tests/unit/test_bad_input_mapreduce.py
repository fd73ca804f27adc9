"""MapReduce bad input on the inline executor: the bad-record limit while a job runs and
over invalid input lines, reduce parts that would not read back as one result, empty input
directories, and rerunning over a failed job's leftovers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import engine
from engine.errors import InputNotFoundError, JobFailedError, TooManyBadRecordsError
from engine.mapreduce.rules import check_bad_records_so_far
from jobs.wordcount_job import wordcount_job
from tests.oracles import table_to_dict, wordcount_oracle

pytestmark = pytest.mark.unit

TOTAL = engine.GroupByAggregate("key", {"value": "sum"})
SEEN_SPLITS: list[int] = []


def refuse_every_row(table: pa.Table) -> pa.Table:
    if table.num_rows == 0:  # the engine learns the output schema from an empty call
        return table
    SEEN_SPLITS.append(int(pc.min(table.column("split")).as_py()))
    raise ValueError("no row is welcome")


def keyed_table(rows: int, splits: int) -> pa.Table:
    return pa.table({"key": pa.array([i % 7 for i in range(rows)], pa.int64()),
                     "value": pa.array([1] * rows, pa.int64()),
                     "split": pa.array([i * splits // rows for i in range(rows)], pa.int64())})


def test_the_limit_so_far_only_fails_when_no_good_rest_could_save_the_job() -> None:
    # a tenth of the input read, 5 of its 100 records bad: at most 5 of about 1000 in all
    check_bad_records_so_far(Counter(map_input_records=100, bad_records_skipped=5), 0.01, 0.1)
    with pytest.raises(TooManyBadRecordsError, match="stopped early"):
        check_bad_records_so_far(Counter(map_input_records=100, bad_records_skipped=11), 0.01, 0.1)
    with pytest.raises(TooManyBadRecordsError, match="11 of the first 100"):
        check_bad_records_so_far(Counter(map_input_records=100, invalid_input_records=11), 0.01, 0.1)
    check_bad_records_so_far(Counter(map_input_records=100, bad_records_skipped=100), 0.01, 1.0)  # the end: not here


def test_a_map_that_fails_on_every_row_stops_the_job_after_its_first_tasks(tmp_path: Path) -> None:
    SEEN_SPLITS.clear()
    job = engine.MapReduceJob(name="hopeless", source=engine.TableSource(keyed_table(2000, 20), batch_rows=100),
                              map=refuse_every_row, reduce=TOTAL, keys="key", reducers=2, output=str(tmp_path / "out"))
    with pytest.raises(TooManyBadRecordsError, match=r"^100 of the first 100 records were bad.*stopped early"):
        engine.run(job, "inline").result()
    assert sorted(set(SEEN_SPLITS)) == [0]  # one of the 20 map tasks ran, not all of them


def refuse_values_ending_in_99(batch: pa.Table) -> pa.Table:
    values = batch.column("value")
    if pc.any(pc.equal(pc.subtract(values, pc.multiply(pc.divide(values, 100), 100)), 99)).as_py():
        raise ValueError("ends in 99")
    return batch.select(["key", "value"])


def test_a_few_bad_rows_spread_over_the_input_do_not_stop_the_job_early(tmp_path: Path) -> None:
    table = keyed_table(2000, 20).set_column(1, "value", pa.array(range(2000), pa.int64()))
    job = engine.MapReduceJob(name="fine", source=engine.TableSource(table, batch_rows=100),
                              map=refuse_values_ending_in_99, reduce=TOTAL, keys="key", reducers=2,
                              output=str(tmp_path / "out"), options=engine.JobOptions(max_bad_record_fraction=0.02))
    result = engine.run(job, "inline").result()
    expected = Counter()
    for value in range(2000):
        if value % 100 != 99:
            expected[value % 7] += value
    assert dict(zip(result.table().column("key").to_pylist(), result.table().column("value").to_pylist())) == expected
    assert result.counters["bad_records_skipped"] == 20


def test_invalid_utf8_lines_count_against_the_bad_record_limit(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_bytes(b"good words\n" * 8 + b"\xff bad\n\xfe\xfd\n")  # 2 of 10 lines invalid
    strict = wordcount_job([str(tmp_path / "in")], str(tmp_path / "strict"), options=engine.JobOptions(
        max_bad_record_fraction=0.1))
    with pytest.raises(TooManyBadRecordsError, match=r"^2 of 10 records were bad \(20\.0%\), above the allowed 10\.0%"):
        engine.run(strict, "inline").result()
    lenient = wordcount_job([str(tmp_path / "in")], str(tmp_path / "lenient"), options=engine.JobOptions(
        max_bad_record_fraction=0.2))
    result = engine.run(lenient, "inline").result()
    assert table_to_dict(result.table()) == {"good": 8, "words": 8}
    assert result.counters["invalid_input_records"] == 2


def reduce_with_a_type_per_partition(table: pa.Table) -> pa.Table:
    total = TOTAL(table)
    odd = total.num_rows and total.column("key")[0].as_py() % 2 == 1
    return total.set_column(1, "value", pc.cast(total.column("value"), pa.float64())) if odd else total


def test_reduce_parts_with_different_schemas_fail_the_job_before_success(tmp_path: Path) -> None:
    table = pa.table({"key": pa.array(range(40), pa.int64()), "value": pa.array([1] * 40, pa.int64())})
    job = engine.MapReduceJob(name="mixed", source=engine.TableSource(table, batch_rows=10), map=lambda t: t,
                              reduce=reduce_with_a_type_per_partition, keys="key", reducers=8,
                              output=str(tmp_path / "out"))
    with pytest.raises(JobFailedError, match=r"^reduce-\d+ wrote a part whose schema \(key: int64, value: (double|int64)\) "
                                             r"differs from reduce-\d+'s"):
        engine.run(job, "inline").result()
    assert not (tmp_path / "out" / "_SUCCESS").exists()


def test_a_reduce_that_drops_the_key_column_is_named(tmp_path: Path) -> None:
    table = pa.table({"key": pa.array(range(10), pa.int64()), "value": pa.array([1] * 10, pa.int64())})
    job = engine.MapReduceJob(name="keyless", source=engine.TableSource(table), map=lambda t: t,
                              reduce=lambda t: TOTAL(t).drop_columns(["key"]), keys="key", reducers=1,
                              output=str(tmp_path / "out"))
    with pytest.raises(JobFailedError, match="returned no key column 'key' \\(its columns: value\\)"):
        engine.run(job, "inline").result()


def test_an_input_directory_without_files_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputNotFoundError, match=f"input directory holds no files: {tmp_path / 'empty'}$"):
        engine.run(wordcount_job([str(tmp_path / "empty")], str(tmp_path / "out")), "inline").result()


def test_a_failed_jobs_leftovers_do_not_block_a_rerun_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_bytes(b"x y\n\xff\n" * 20)
    out = str(tmp_path / "out")
    with pytest.raises(TooManyBadRecordsError):
        engine.run(wordcount_job([str(tmp_path / "in")], out, split_size=8), "inline").result()
    assert any(Path(out).iterdir())  # the failed run left its dead letters
    rerun = wordcount_job([str(tmp_path / "in")], out, split_size=8,
                          options=engine.JobOptions(overwrite=True, max_bad_record_fraction=0.5))
    result = engine.run(rerun, "inline").result()
    assert table_to_dict(result.table()) == wordcount_oracle([tmp_path / "in" / "a.txt"])
    assert result.dead_letters().num_rows == 20


FLAKY_CALLS: list[int] = []


def count_rows_refusing_13_and_flaky_once(batch: pa.Table) -> pa.Table:
    engine.increment_counter("rows_seen", batch.num_rows)  # before failing: must not count then
    FLAKY_CALLS.append(batch.num_rows)
    if len(FLAKY_CALLS) == 1:
        raise engine.TransientError("first call flakes")
    if pc.any(pc.equal(batch.column("value"), 13)).as_py():
        raise ValueError("13 is unlucky")
    return batch


def test_user_counters_count_only_the_calls_that_succeeded(tmp_path: Path) -> None:
    FLAKY_CALLS.clear()
    table = pa.table({"key": pa.array([i % 3 for i in range(64)], pa.int64()), "value": pa.array(range(64))})
    job = engine.MapReduceJob(name="counted", source=engine.TableSource(table, batch_rows=64), map=count_rows_refusing_13_and_flaky_once,
                              reduce=TOTAL, keys="key", reducers=1, output=str(tmp_path / "out"),
                              options=engine.JobOptions(max_bad_record_fraction=0.5,
                                                        retry=engine.RetryPolicy(max_attempts=3, base_delay_s=0.0)))
    result = engine.run(job, "inline").result()
    assert len(FLAKY_CALLS) > 3  # the flaky call, its retry, and the bisection's calls
    assert result.counters["rows_seen"] == 63  # each good row once; no failed call counted


@pytest.mark.parametrize("value", [0, -1, 1.5, "2"])
def test_start_with_workers_must_be_none_or_a_positive_count(tmp_path: Path, value: object) -> None:
    (tmp_path / "in.txt").write_text("a b\n")
    with pytest.raises(engine.SpecError) as raised:
        wordcount_job([str(tmp_path / "in.txt")], str(tmp_path / "out"),
                      options=engine.JobOptions(start_with_workers=value))  # type: ignore[arg-type]
    assert str(raised.value) == f"start_with_workers must be None or at least 1, got {value!r}"
