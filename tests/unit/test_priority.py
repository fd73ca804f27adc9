"""Work run at a lower OS priority in a thread of its own (engine.runtime.priority)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from engine.errors import SpecError
from engine.lambda_arch.spec import LambdaOptions
from engine.mapreduce.spec import JobOptions
from engine.runtime.priority import call_at_lower_priority

pytestmark = pytest.mark.unit


def thread_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_work_runs_lowered_and_the_caller_keeps_its_priority() -> None:
    before = thread_nice()
    inside = call_at_lower_priority(5, thread_nice)
    assert inside == min(19, before + 5)
    assert thread_nice() == before
    assert call_at_lower_priority(0, thread_nice) == before  # 0: called directly


def test_results_and_errors_come_back_to_the_caller() -> None:
    assert call_at_lower_priority(3, lambda a, b=0: a + b, 2, b=5) == 7

    def fail() -> None:
        raise KeyError("bad key")

    with pytest.raises(KeyError, match="bad key"):
        call_at_lower_priority(3, fail)


@pytest.mark.parametrize("value", [-1, 20, True, 1.5])
def test_nice_options_are_checked(value: object) -> None:
    with pytest.raises(SpecError, match="nice must be an int within"):
        JobOptions(nice=value).validate()  # type: ignore[arg-type]
    with pytest.raises(SpecError, match="batch_nice must be an int within"):
        LambdaOptions(batch_nice=value)  # type: ignore[arg-type]
