"""MapReduce word count under the loss of each kind of process (``bench faults``).

One embedded cluster, one corpus; every run's output must equal a plain-Python
``Counter`` of the corpus (computed once).  Kills
from outside the job happen once half of the maps are complete (polled through the job's
``status()``); after each disturbed run an untimed warm-up job lets the pool start what
the fault took (a master process, the spare worker), so the next timed run starts warm.
The embedded-cluster loss runs under a driver subprocess (``bench.faults_node_loss``).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from bench.faults_common import embedded_cluster, failed_row, guarded, kill_actor, scenario_row, sigkill_own, wait_until

PATTERN = "mapreduce"
QUICK_DELAY_S = 0.12  # --quick: every task sleeps this long, so kills land mid-job
TARGETS = {"worker killed at 50% of maps": "<= 1.5x",
           "primary master killed at 50% of maps (in the supervisor)": "<= undisturbed + 2 s + work since the last snapshot",
           "worker slowed 5x, speculation on": "<= 1.3x"}


def corpus(size: str, directory: Path) -> Path:
    """The ``datasets.text`` corpus of ``size``, generated once under ``directory``."""
    from datasets.text import TextCorpusSpec, parse_size, write_text_corpus

    target = directory / f"corpus-{size}"
    marker = target / ".complete"
    if not marker.exists():
        write_text_corpus(TextCorpusSpec(parse_size(size)), target, progress=True)
        marker.write_text("ok")
    return target


def oracle_counts(directory: Path) -> dict[str, int]:
    """Plain Python: ``str.split()`` word counts of every ``*.txt`` file, line by line."""
    counts: Counter = Counter()
    for path in sorted(directory.glob("*.txt")):
        with path.open(encoding="utf-8", newline="") as lines:
            for line in lines:
                counts.update(line.split())
    return dict(counts)


def _pace(delay_s: float, workers: int, **first: Any) -> dict:
    """Per-worker-number chaos: every worker (and its replacements) sleeps ``delay_s``
    after each task; worker 0 also gets ``first``."""
    from engine.testing import WorkerChaos

    if not delay_s and not first:
        return {}
    plan = {number: WorkerChaos(delay_s=delay_s) for number in range(workers + 4)}
    if first:
        plan[0] = WorkerChaos(delay_s=delay_s, **first)
    return plan


def _maps_done(handle: Any, at_least: int) -> bool:
    return handle.done() or handle.status().get("maps", {}).get("completed", 0) >= at_least


def _standby_of(job_id: str) -> Any:
    """The job's standby master: the named master actor whose coordinator of it stands by."""
    import ray

    from engine.runtime.supervisor import MASTER_PREFIX, NAMESPACE

    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry.get("namespace") == NAMESPACE and entry["name"].startswith(MASTER_PREFIX):
            master = ray.get_actor(entry["name"], namespace=NAMESPACE)
            try:
                if ray.get(master.ping.remote(job_id), timeout=5).get("role") == "standby":
                    return master
            except ray.exceptions.RayError:
                continue
    raise LookupError(f"no standby master of job {job_id}")


def _pool() -> Any:
    import ray

    from engine.runtime.supervisor import NAMESPACE, POOL_NAME

    return ray.get_actor(POOL_NAME, namespace=NAMESPACE)


def _kill_standby(handle: Any) -> str:
    return f"standby master pid {kill_actor(_standby_of(handle.job_id))} SIGKILLed"


def _kill_pool(handle: Any) -> str:
    return f"supervisor (WorkerPool, also the primary's host) pid {kill_actor(_pool())} SIGKILLed"


def _kill_spare(handle: Any) -> str:
    import ray

    from engine.runtime.supervisor import NAMESPACE

    spares: list[str] = []

    def found() -> bool:  # the pool starts its spare in the background: give it 10 s
        spares[:] = ray.get(_pool().members.remote(), timeout=10)["spares"]
        return bool(spares)

    if not wait_until(found, timeout_s=10, interval_s=0.1):
        return "no spare worker was up to kill"
    spare = ray.get_actor(spares[0], namespace=NAMESPACE)
    pid = ray.get(spare.ping.remote(), timeout=10)["pid"]
    return f"spare worker pid {sigkill_own(pid)} SIGKILLed"


def scenarios(maps: int, workers: int, delay_s: float) -> dict[str, tuple[Any, dict, Callable | None, float]]:
    """name -> (chaos plan, extra JobOptions, external kill or None, fraction of maps done before it)."""
    from engine.testing import ChaosPlan, MasterChaos

    half = max(1, maps // 2)
    paced = ChaosPlan(workers=_pace(delay_s, workers))
    return {
        "undisturbed": (paced, {}, None, 0.0),
        "worker killed at 50% of maps": (
            ChaosPlan(workers=_pace(delay_s, workers, die_after_tasks=max(1, half // workers), die_in_phase="map")),
            {}, None, 0.0),
        "primary master killed at 50% of maps (in the supervisor)": (
            ChaosPlan(workers=_pace(delay_s, workers), master=MasterChaos(die_after_completions=half)), {}, None, 0.0),
        "standby master killed at 50% of maps": (paced, {}, _kill_standby, 0.5),
        "supervisor (WorkerPool) killed at 50% of maps": (paced, {}, _kill_pool, 0.5),
        "spare worker killed at 25%, then a worker at 50% of maps": (
            ChaosPlan(workers=_pace(delay_s, workers, die_after_tasks=max(1, half // workers), die_in_phase="map")),
            {}, _kill_spare, 0.25),
        "worker slowed 5x, speculation on": (
            ChaosPlan(workers=_pace(delay_s, workers, slowdown=5.0)), {"speculation": True}, None, 0.0),
        "worker slowed 5x, speculation off": (
            ChaosPlan(workers=_pace(delay_s, workers, slowdown=5.0)), {"speculation": False}, None, 0.0),
    }


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def counts_of(table: Any) -> dict[str, int]:
    """A word-count output table as ``{word: count}``."""
    return dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist()))


def _one_run(job: Any, plan: Any, kill: Callable | None, kill_at: int, expected: dict[str, int]) -> dict:
    import engine

    started = time.perf_counter()
    handle = engine.run(job, chaos=plan)
    note = ""
    if kill is not None:
        wait_until(lambda: _maps_done(handle, kill_at), timeout_s=300, interval_s=0.05)
        note = kill(handle) if not handle.done() else "the job ended before the kill"
    result = handle.result(timeout_s=600)
    elapsed = time.perf_counter() - started
    details = result.details
    return {"seconds": elapsed, "exact": counts_of(result.table()) == expected, "kill": note,
           "failed_workers": len(details["failed_workers"]), "takeover": details["takeover"],
           "speculative_attempts": details["speculative_attempts"],
           "max_map_attempt": max(a for t, a in result.attempts.items() if t.startswith("map")),
           "events": [e for e in details.get("events", []) if "died" in e or "replacement" in e or "took over" in e][:12]}


def run(args: argparse.Namespace) -> list[dict]:
    """Every in-process scenario, then the embedded-cluster loss; one row per scenario."""
    import engine
    from datasets.text import parse_size
    from engine.io.sources import TextSource
    from jobs.wordcount_job import wordcount_job

    from bench import faults_node_loss

    data = corpus(args.size, args.data)
    split_size = parse_size(args.split_size)
    maps = len(TextSource([str(data)], split_size=split_size).plan_splits())
    delay_s = QUICK_DELAY_S if args.quick else 0.0
    started = time.perf_counter()
    expected = oracle_counts(data)
    oracle_s = time.perf_counter() - started
    times: dict[str, list[dict]] = {}
    with embedded_cluster(args.cpus):
        def job(output: str, files: list[str], **extra: Any) -> Any:
            options = engine.JobOptions(overwrite=True, workers=args.workers, heartbeat_interval_s=0.2,
                                        snapshot_every_tasks=1, **extra)
            return wordcount_job(files, str(args.data / output), reducers=2 * args.workers, split_size=split_size,
                                 options=options)

        warm = job("out-warm", [str(sorted(data.glob("*.txt"))[0])])
        engine.run(warm).result(timeout_s=600)
        for repeat in range(args.repeat):
            for name, (plan, extra, kill, fraction) in scenarios(maps, args.workers, delay_s).items():
                times.setdefault(name, []).append(guarded(name, repeat, lambda: _one_run(
                    job("out-faults", [str(data)], **extra), plan, kill, max(1, round(fraction * maps)), expected)))
                if name != "undisturbed":  # the pool restarts what the fault took, untimed
                    guarded("(untimed warm-up job)", repeat, lambda: {
                        "seconds": _timed(lambda: engine.run(warm).result(timeout_s=600)), "exact": True})
        from engine.runtime.supervisor import shutdown_pool

        shutdown_pool()
    base = scenario_row(PATTERN, "undisturbed", times["undisturbed"], None, None,
                        f"{maps} maps, {args.workers} workers, {2 * args.workers} reducers")["seconds"]
    rows = [scenario_row(PATTERN, name, runs, None if name == "undisturbed" else "undisturbed", base,
                         _notes(runs)) for name, runs in times.items()]
    rows[0]["notes"] = (f"{maps} maps of {args.split_size}, {args.workers} workers, {2 * args.workers} reducers; "
                        f"every output checked against a Counter of the corpus ({oracle_s:.1f}s)")
    for row in rows:
        row["target"] = TARGETS.get(row["scenario"])
    try:
        return rows + faults_node_loss.run(args, data, expected, delay_s)
    except Exception as error:  # the in-process rows are kept
        return rows + [failed_row(PATTERN, faults_node_loss.KILLED, error)]


def _notes(runs: list[dict]) -> str:
    last = runs[-1]
    if "error" in last:
        return f"raised {last['error']}"
    parts = [last["kill"]] if last["kill"] else []
    parts.append(f"failed workers {last['failed_workers']}, takeover {last['takeover']}, "
                 f"speculative {last['speculative_attempts']}, max map attempt {last['max_map_attempt']}")
    return "; ".join(parts)
