"""Scatter-gather under the loss of a shard host (``bench faults``, pattern scatter-gather).

Top-k prefix search (``jobs.topk_search``) over 8 shards on 2 shard hosts, sequential
queries.  In the disturbed run the host of ``shard-1`` is SIGKILLed after a quarter of
the queries.  Reported: total time and latency against the undisturbed run, queries
answered complete / partial / failed, seconds from the kill to the first complete answer.
Exact means: every complete answer equals a plain-pyarrow oracle over the whole table
(filter by prefix, sort, first k: no engine code), every partial answer names exactly the
dead host's shards and equals the oracle over the other shards, and once the host is
back every answer is complete and exact.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bench.faults_common import embedded_cluster, guarded, kill_actor, pattern_rows, percentiles_ms
from bench.scatter_gather import make_requests, make_word_counts

PATTERN = "scatter-gather"
SHARDS, HOSTS, K = 8, 2, 10
VICTIM = "shard-1"


class Oracle:
    """Top-k by prefix over a table, memoized per prefix (plain pyarrow)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.answers: dict[tuple[str, int], list[dict]] = {}

    def __call__(self, request: dict) -> list[dict]:
        key = (request["prefix"], int(request["k"]))
        if key not in self.answers:
            rows = self.table.filter(pc.starts_with(self.table["word"], pattern=key[0]))
            rows = rows.sort_by([("count", "descending"), ("word", "ascending")]).slice(0, key[1])
            self.answers[key] = rows.select(["word", "count"]).to_pylist()
        return self.answers[key]


def _answer(result: Any) -> list[dict]:
    return result.value.select(["word", "count"]).to_pylist() if result.value is not None else []


def _queries(service: Any, requests: list[dict], everything: Oracle, survivors: Oracle | None,
             doomed: list[str], kill_at: int | None) -> dict:
    """Send ``requests`` one after another (killing the victim's host before ``kill_at``)."""
    latencies, complete, partial, failed, wrong = [], 0, 0, 0, []
    killed_at = recovered_s = None
    note = ""
    started = time.perf_counter()
    for index, request in enumerate(requests):
        if index == kill_at:
            note = f"host of {VICTIM} ({', '.join(doomed)}) pid {kill_actor(service.host_of(VICTIM))} SIGKILLed"
            killed_at = time.perf_counter()
        sent = time.perf_counter()
        try:
            result = service.gather(request)
        except Exception as error:  # NotEnoughRepliesError or worse: a query not answered
            failed += 1
            wrong.append(f"request {index} raised {type(error).__name__}")
            continue
        latencies.append(time.perf_counter() - sent)
        if not result.partial:
            complete += 1
            if killed_at is not None and recovered_s is None:
                recovered_s = time.perf_counter() - killed_at
            if _answer(result) != everything(request):
                wrong.append(f"request {index} complete but different")
        else:
            partial += 1
            if survivors is None or result.missing != doomed or _answer(result) != survivors(request):
                wrong.append(f"request {index} partial missing {result.missing}")
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "queries": len(requests), "complete": complete, "partial": partial,
            "failed": failed, "latency": percentiles_ms(latencies), "kill": note, "recovered_s": recovered_s,
            "wrong": wrong[:10], "exact": not wrong, "killed_at": killed_at}


def _after_recovery(service: Any, requests: list[dict], everything: Oracle) -> tuple[bool, float, float]:
    """Wait (at most 120 s) for a complete answer, then check ``requests`` all come back
    complete and exact; returns (exact, seconds waited, ``perf_counter`` of the first
    complete answer)."""
    started = time.perf_counter()
    while service.gather(requests[0]).partial:
        if time.perf_counter() - started > 120:
            return False, time.perf_counter() - started, float("nan")
        time.sleep(0.05)
    back = time.perf_counter()
    exact = all(not (r := service.gather(q)).partial and _answer(r) == everything(q) for q in requests)
    return exact, back - started, back


def _one_run(shards: list[pa.Table], requests: list[dict], everything: Oracle, kill_at: int | None) -> dict:
    """A fresh service, warmed up; the queries; with ``kill_at``, the check after recovery."""
    import engine
    from engine.scatter_gather import ScatterGatherOptions
    from jobs.topk_search import WARMUP_REQUEST, build_search

    options = ScatterGatherOptions(deadline_s=5.0, hosts=HOSTS, warmup_request=WARMUP_REQUEST)
    with engine.run(build_search(shards, K, options)) as service:
        for request in requests[:20]:  # warm-up, untimed
            service.gather(request)
        doomed = next(host for host in service.assignment if VICTIM in host)
        others = [shard for index, shard in enumerate(shards) if f"shard-{index}" not in doomed]
        run = _queries(service, requests, everything, Oracle(pa.concat_tables(others)), doomed, kill_at)
        if kill_at is not None:
            exact_after, waited, back = _after_recovery(service, requests[:20], everything)
            if run["recovered_s"] is None:  # the host came back after the last query
                run["recovered_s"] = back - run["killed_at"]
            run.update(exact=run["exact"] and exact_after, exact_after_recovery=exact_after,
                       waited_after_run_s=waited, host_restarts=service.status()["host_restarts"])
    return run


def run(args: argparse.Namespace) -> list[dict]:
    """Undisturbed and shard-host-killed runs of the same queries; one row each."""
    from jobs.topk_search import split_shards

    rows, count = (20_000, 150) if args.quick else (200_000, 1_500)
    table = make_word_counts(rows, seed=7)
    shards = split_shards(table, SHARDS)
    requests = make_requests(count, K, seed=8)
    everything = Oracle(table)
    runs: dict[str, list[dict]] = {"undisturbed": [], "shard host killed at 25% of queries": []}
    with embedded_cluster(args.cpus):
        for repeat in range(args.repeat):
            for name in runs:
                kill_at = None if name == "undisturbed" else count // 4
                runs[name].append(guarded(name, repeat, lambda: _one_run(shards, requests, everything, kill_at)))
    def notes_of(last: dict) -> str:
        notes = (f"{count} sequential top-{K} queries, {SHARDS} shards of {rows:,} words on {HOSTS} hosts: "
                 f"complete {last['complete']}, partial {last['partial']}, failed {last['failed']}, "
                 f"p50 {last['latency']['p50_ms']:.1f} ms, p99 {last['latency']['p99_ms']:.1f} ms")
        if last["kill"]:
            notes = (f"{last['kill']}; first complete answer {last['recovered_s']:.2f}s after the kill"
                     f"{' (after the last query)' if last['waited_after_run_s'] > 0.01 else ''}; "
                     f"host restarts {last['host_restarts']}; {notes}")
        return notes

    return pattern_rows(PATTERN, runs, notes_of)
