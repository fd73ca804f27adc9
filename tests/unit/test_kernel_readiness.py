"""Small inputs run the kernels' exact references until the compiled kernels are loaded;
past the references' budget they load in the background, and a large input waits for them."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.kernels import readiness

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# A worker's small job, end to end through the library calls a map and a reduce make.
SMALL_JOB = r"""
import json, sys
import numpy as np, pyarrow as pa
from engine.io.text import decode_block
from engine.kernels.text import count_words
from jobs.wordcount_job import SUM_COUNTS, sum_word_counts
from engine.common.hashing import hash_partition
text = "b a\u3000b\u00a0c\n\t\u00e9t\u00e9 a  \r\nlast line without newline".encode()
table, bad, used, _ = decode_block(memoryview(text), 0, "small.txt", "blocks")
counts = sum_word_counts(count_words(table.column("text")))
parts = hash_partition(counts, ["word"], 2)
reduced = pa.concat_tables([SUM_COUNTS(p) for p in parts])
print(json.dumps({"counts": dict(zip(reduced.column("word").to_pylist(), reduced.column("count").to_pylist())),
                  "bad": len(bad), "numba": "numba" in sys.modules, "pandas": "pandas" in sys.modules}))
"""


def run_job(code: str) -> dict:
    """Run ``code`` in a fresh Python process with this checkout on its path; its JSON line."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**env, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout)


def test_a_small_job_gives_exact_counts_without_loading_numba_or_pandas() -> None:
    got = run_job(SMALL_JOB)
    text = "b a\u3000b\u00a0c\n\t\u00e9t\u00e9 a  \r\nlast line without newline"
    assert got["counts"] == dict(collections.Counter(text.split()))
    assert got["bad"] == 0
    assert got["numba"] is False and got["pandas"] is False


def test_the_compiled_path_does_not_import_pandas_either() -> None:
    # Arrow's to_numpy and pa.array import pandas on first use (0.5-0.8 s per worker)
    job = "from engine.kernels.readiness import ensure_loaded\nensure_loaded()\n" + SMALL_JOB.replace(
        '"pandas" in sys.modules}', '"pandas" in sys.modules, "loaded": __import__("engine.kernels.readiness").kernels.readiness.loaded()}')
    got = run_job(job)
    text = "b a\u3000b\u00a0c\n\t\u00e9t\u00e9 a  \r\nlast line without newline"
    assert got["counts"] == dict(collections.Counter(text.split()))
    assert got["loaded"] is True and got["numba"] is True and got["pandas"] is False


@pytest.fixture
def fresh_readiness(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``readiness`` as in a new process, with a fake load that records its thread."""
    loads: list[str] = []
    monkeypatch.setattr(readiness, "_loaded", threading.Event())
    monkeypatch.setattr(readiness, "_reference_bytes", 0)
    monkeypatch.setattr(readiness, "_background_started", False)
    import engine.kernels.warmup as warmup

    monkeypatch.setattr(warmup, "warm_up", lambda: loads.append(threading.current_thread().name) or {})
    return loads


def test_small_inputs_use_references_until_the_budget_then_load_in_the_background(fresh_readiness: list[str]) -> None:
    step = readiness.SMALL_INPUT_BYTES - 1
    calls = 0
    while readiness._reference_bytes + step <= readiness.REFERENCE_BUDGET_BYTES:
        assert readiness.use_compiled(step) is False
        calls += 1
    assert calls >= 1 and fresh_readiness == []
    assert readiness.use_compiled(step) is False  # past the budget: still the reference, the load starts
    for _ in range(100):
        if readiness.loaded():
            break
        threading.Event().wait(0.05)
    assert readiness.loaded() and fresh_readiness == ["kernel-load"]
    assert readiness.use_compiled(1) is True


def test_a_large_input_waits_for_the_load_in_its_own_thread(fresh_readiness: list[str]) -> None:
    assert readiness.use_compiled(readiness.SMALL_INPUT_BYTES) is True
    assert fresh_readiness == [threading.current_thread().name]
    assert readiness.use_compiled(0) is True
    readiness.load_in_background()  # already loaded: nothing more
    assert len(fresh_readiness) == 1
