"""Fault test: a pipeline whose driver (and with it the embedded Ray cluster) is SIGKILLed
midway resumes from its last committed sink batches: ``engine.run(pipeline, resume=True)``
delivers only what the sink does not hold, so the sink holds every row exactly once, and
the dead-letter store every dead row once."""

from __future__ import annotations

import os
import signal
from collections import Counter
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import ray.cloudpickle

import engine
import tests.fault.resume_pipeline as resume_pipeline
from engine.cluster import connect
from engine.common.dead_letters import DeadLetterStore
from tests.fault.resume_pipeline import TOTAL, dead_letter_dir, resumable_pipeline

pytestmark = pytest.mark.fault

ROOT = Path(__file__).resolve().parents[2]
ray.cloudpickle.register_pickle_by_value(resume_pipeline)


def kill_driver_midway(executor: str, out: Path, log: Path, parts: int = 6) -> dict[str, int]:
    """Start the driver in its own session, SIGKILL its whole process group once the sink
    holds ``parts`` parts; the parts it left (name -> mtime)."""
    with open(log, "w") as errors:
        driver = subprocess.Popen([sys.executable, "-m", "tests.fault.resume_pipeline", executor, str(out)],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True)
        assert driver.stdout is not None
        try:
            for line in driver.stdout:
                if int(line) >= parts:
                    break
            else:
                raise AssertionError(f"the driver ended before it was killed: {log.read_text()[-2000:]}")
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=60)
    assert driver.returncode == -signal.SIGKILL
    assert not (out / "_SUCCESS").exists()
    return {path.name: path.stat().st_mtime_ns for path in out.glob("part-*.parquet")}


def check_exactly_once(out: Path, earlier: dict[str, int], result: engine.PipelineResult) -> None:
    table = pq.read_table(out)
    x = table["x"].to_pylist()
    dead = [v for v in range(TOTAL) if v % 500 == 7]
    assert sorted(x) == [v for v in range(1, TOTAL, 2) if v not in dead]  # every row, none twice
    letters = DeadLetterStore(dead_letter_dir(str(out))).all_rows("odd")
    assert letters is not None and Counter(letters["x"].to_pylist()) == Counter(dead)  # each dead row once
    assert table["y"].to_pylist() == [2 * v for v in x]
    for name, mtime in earlier.items():
        assert (out / name).stat().st_mtime_ns == mtime  # committed before the kill: not written again
    assert result.resumed_batches == len(earlier) > 0
    assert (out / "_SUCCESS").exists()


def test_a_pipeline_resumes_on_ray_after_its_driver_and_cluster_were_killed(isolated_ray: None,
                                                                            tmp_path: Path) -> None:
    out = tmp_path / "out"
    earlier = kill_driver_midway("ray", out, tmp_path / "driver.log")
    connect(num_cpus=2)
    result = engine.run(resumable_pipeline(str(out)), "ray", resume=True).result(timeout_s=300)
    check_exactly_once(out, earlier, result)


def test_a_pipeline_resumes_inline_after_its_driver_was_killed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    earlier = kill_driver_midway("inline", out, tmp_path / "driver.log")
    result = engine.run(resumable_pipeline(str(out)), "inline", resume=True).result(timeout_s=300)
    check_exactly_once(out, earlier, result)
