"""Pieces every ``bench faults`` pattern module shares: report rows, the embedded cluster,
and killing one of this run's own processes.

A pattern module exposes ``run(args) -> list[dict]``; each dict is a row made by
:func:`scenario_row`.  Kills go through :func:`sigkill_own` only, which refuses a pid
outside this driver's process tree (the machine is shared: another engineer's Ray
processes carry the same titles).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import time
from typing import Any, Callable, Iterator

import psutil


def scenario_row(pattern: str, scenario: str, runs: list[dict], baseline: str | None,
                 baseline_seconds: float | None, notes: str = "") -> dict:
    """One report row: median ``seconds`` of ``runs`` (each a dict with ``seconds``, None
    for a run that raised, and ``exact``), its ratio to ``baseline_seconds`` (1.0 for the
    baseline itself), and ``exact`` only if every run was."""
    timed = [run["seconds"] for run in runs if run["seconds"] is not None]
    seconds = statistics.median(timed) if timed else None
    ratio = seconds / baseline_seconds if seconds is not None and baseline_seconds else None
    return {"pattern": pattern, "scenario": scenario, "seconds": seconds,
            "ratio_to_undisturbed": (1.0 if seconds is not None else None) if baseline is None else ratio,
            "baseline": baseline or scenario, "exact": bool(runs) and all(run["exact"] for run in runs),
            "runs": runs, "notes": notes}


def pattern_rows(pattern: str, runs: dict[str, list[dict]], notes_of: Callable[[dict], str]) -> list[dict]:
    """One row per scenario of ``runs`` (scenario -> its runs; ``"undisturbed"`` is the
    baseline of the others): notes from ``notes_of(last run)``, or the error of a last run
    that raised."""
    base = scenario_row(pattern, "undisturbed", runs["undisturbed"], None, None)["seconds"]
    rows = []
    for name, results in runs.items():
        last = results[-1]
        notes = f"raised {last['error']}" if "error" in last else notes_of(last)
        rows.append(scenario_row(pattern, name, results, None if name == "undisturbed" else "undisturbed", base,
                                 notes))
    return rows


def failed_row(pattern: str, scenario: str, error: BaseException) -> dict:
    """The row of a scenario (or pattern) that raised instead of finishing: not exact."""
    line = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    return {"pattern": pattern, "scenario": scenario, "seconds": None, "ratio_to_undisturbed": None,
            "baseline": None, "exact": False, "runs": [], "notes": f"raised {line}"}


def guarded(scenario: str, repeat: int, fn: Callable[[], dict]) -> dict:
    """``fn()`` (one run: a dict with ``seconds``, ``exact`` and maybe ``kill``), printed;
    a run that raises becomes ``{"seconds": None, "exact": False, "error": ...}`` so that
    the other scenarios still run."""
    try:
        run = fn()
    except Exception as error:
        run = {"seconds": None, "exact": False, "kill": "",
               "error": f"{type(error).__name__}: {error}".splitlines()[0][:300]}
    seconds = "  raised" if run["seconds"] is None else f"{run['seconds']:7.2f}s"
    print(f"[{repeat}] {scenario:58s} {seconds} exact: {run['exact']}  {run.get('kill', '')} {run.get('error', '')}",
          flush=True)
    return run


@contextlib.contextmanager
def embedded_cluster(cpus: int) -> Iterator[Any]:
    """A fresh embedded Ray cluster of ``cpus`` CPUs for one pattern, shut down after it
    (a cluster left over by the previous pattern is shut down first)."""
    import ray

    import engine

    if ray.is_initialized():
        engine.shutdown()
    info = engine.connect(num_cpus=cpus)
    try:
        yield info
    finally:
        engine.shutdown()
        if ray.is_initialized():
            ray.shutdown()


def own_processes(root: int | None = None) -> list[psutil.Process]:
    """Every process under ``root`` (default: this one), e.g. its embedded Ray cluster."""
    return psutil.Process(root or os.getpid()).children(recursive=True)


def sigkill_own(pid: int, root: int | None = None) -> int:
    """SIGKILL ``pid``, which must belong to the process tree of ``root`` (default: this
    process); returns it.  Raises ``ValueError`` naming a pid that is not ours."""
    if pid not in {process.pid for process in own_processes(root)}:
        raise ValueError(f"pid {pid} is not a process of this benchmark's cluster: not killing it")
    os.kill(pid, signal.SIGKILL)
    return pid


def _pid_of(actor_self: Any) -> int:
    return os.getpid()


def actor_pid(actor: Any, timeout_s: float = 30.0) -> int:
    """The pid of a Ray actor's process (asked through Ray's ``__ray_call__``)."""
    import ray

    return int(ray.get(actor.__ray_call__.remote(_pid_of), timeout=timeout_s))


def kill_actor(actor: Any) -> int:
    """SIGKILL a Ray actor's process (one of this driver's cluster); returns its pid."""
    return sigkill_own(actor_pid(actor))


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout_s`` passes (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


def percentiles_ms(seconds: list[float]) -> dict[str, float | None]:
    """p50/p99/max of latencies in milliseconds (None when there are none)."""
    if not seconds:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "n": 0}
    ordered = sorted(seconds)

    def at(q: float) -> float:
        return 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": 1000.0 * ordered[-1], "n": len(ordered)}
