"""Every Python example of the README, run as written in a fresh process, output checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def run_example(index: int, marker: str) -> list[str]:
    code = EXAMPLES[index]
    assert marker in code, f"README example {index} is not the one this test checks"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def test_every_readme_example_is_checked_here() -> None:
    assert len(EXAMPLES) == 5


def test_mapreduce_example() -> None:
    lines = run_example(0, "MapReduceJob(")
    assert lines[0] in ("running", "starting", "succeeded")
    assert "{'word': 'the', 'count': 2}" in lines[1] and "{'word': 'fox', 'count': 1}" in lines[1]
    assert lines[-1] == "True"


def test_pipeline_example() -> None:
    assert run_example(1, "Pipeline(")[-1] == "993 1"


def test_scatter_gather_example() -> None:
    lines = run_example(2, "ScatterGather(")
    assert lines[-3] == "[{'word': 'apricot', 'count': 9}, {'word': 'avocado', 'count': 7}]"
    assert lines[-2] == "False ['shard-0', 'shard-1']"
    assert lines[-1] == "[{'word': 'banana', 'count': 2}]"


def test_live_word_count_example() -> None:
    lines = run_example(3, "live_wordcount(")
    assert lines[-2] == "[('the', 2), ('cat', 1)] (0, 2)"
    assert lines[-1] == "[('dog', 1)]"


def test_ray_integration_example() -> None:
    lines = run_example(4, "ArrowDatasetSource(")
    assert lines[-2:] == ["[{'city': 'Lima', 'rain_mm': 1}, {'city': 'Oslo', 'rain_mm': 10}]", "(2, 2)"]
