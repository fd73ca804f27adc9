"""Lambda architecture under the loss of a view shard or a speed-layer replica
(``bench faults``, pattern lambda).

The ad-tech deployment (``jobs.adtech``, 2 view shards, speed layer on Ray) ingests the
same generated events in batches while a thread queries ``ads_shown`` every 10 ms.
Half-way through the ingest, one process is SIGKILLed: view shard 1, or a replica of the
speed stage.  Timed: first ingest to every acknowledged event visible.  Exact means no
acknowledged event was lost (the log ends at the last acknowledgement, the answers cover
all of it) and every final answer equals the plain-Python ``AdEventOracle`` fed the same
batches (``jobs.adtech.testing.check_answers``).  Queries that failed while the shard was
down are counted.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.faults_common import embedded_cluster, guarded, kill_actor, pattern_rows, percentiles_ms

PATTERN = "lambda"
SCENARIOS = {"undisturbed": None, "view shard 1 killed at 50% of ingest": "shard",
             "speed-layer replica killed at 50% of ingest": "speed"}


def _kill(lam: Any, victim: str) -> str:
    if victim == "shard":
        return f"view shard 1 pid {kill_actor(lam.shard_actors()[1])} SIGKILLed"
    return f"speed-layer replica pid {kill_actor(lam.speed_replica_actors()[0])} SIGKILLed"


def _one_run(events: Any, batch_rows: int, oracle: Any, victim: str | None) -> dict:
    from engine.lambda_arch import LambdaOptions
    from jobs.adtech import AdTech
    from jobs.adtech.testing import check_answers

    directory = Path(tempfile.mkdtemp(prefix="bench-faults-lambda-"))
    latencies: list[float] = []
    failures: list[str] = []
    stop = threading.Event()
    try:
        with AdTech.start(directory, "ray", LambdaOptions(batch_executor="inline", shards=2)) as lam:

            def query_loop() -> None:
                while not stop.is_set():
                    sent = time.perf_counter()
                    try:
                        lam.ads_shown(hours=24)
                        latencies.append(time.perf_counter() - sent)
                    except Exception as error:  # QueryFailedError while a shard is down
                        failures.append(type(error).__name__)
                    time.sleep(0.01)

            querier = threading.Thread(target=query_loop, daemon=True)
            starts = list(range(0, events.num_rows, batch_rows))
            note, last_ack = "", 0
            started = time.perf_counter()
            querier.start()
            for number, start in enumerate(starts):
                if victim is not None and number == len(starts) // 2:
                    note = _kill(lam, victim)
                last_ack = lam.ingest(events.slice(start, batch_rows)).end_offset
            lam.wait_visible(timeout_s=300)
            seconds = time.perf_counter() - started
            stop.set()
            querier.join()
            healed = lam.heal()  # a shard killed after the last ingest is rebuilt here (not timed)
            if healed:
                lam.wait_visible(timeout_s=300)
            try:
                answers = check_answers(lam, oracle)
                wrong = ""
            except AssertionError as error:
                answers, wrong = {}, str(error).splitlines()[0][:200] if str(error) else "an answer differed"
            covered = answers["ads_shown_1440"].speed_offset if answers else None
            lost = lam.end_offset != last_ack or covered != last_ack or last_ack != len(oracle.rows)
            return {"seconds": seconds, "exact": not wrong and not lost, "kill": note, "acknowledged": last_ack,
                    "log_end": lam.end_offset, "answers_cover": covered, "wrong": wrong, "healed_after": healed,
                    "queries": len(latencies), "failed_queries": len(failures), "latency": percentiles_ms(latencies),
                    "speed_rebuilds": lam.counters()["speed_rebuilds"]}
    finally:
        stop.set()
        shutil.rmtree(directory, ignore_errors=True)


def run(args: argparse.Namespace) -> list[dict]:
    """Undisturbed, view shard killed, speed replica killed; one row each."""
    from datasets.adevents import AdEventSpec, generate_events
    count, batch_rows = (6_000, 300) if args.quick else (200_000, 5_000)
    events = generate_events(AdEventSpec(events=count, users=max(300, count // 20), advertisers=10, span_hours=4,
                                         seed=17, duplicate_rate=0.03))
    oracle = _oracle_of(events, batch_rows)  # fed the same batches as every run
    runs: dict[str, list[dict]] = {name: [] for name in SCENARIOS}
    with embedded_cluster(args.cpus):
        _one_run(events.slice(0, 2 * batch_rows), batch_rows, _oracle_of(events.slice(0, 2 * batch_rows), batch_rows),
                 None)  # warm-up, untimed
        for repeat in range(args.repeat):
            for name, victim in SCENARIOS.items():
                runs[name].append(guarded(name, repeat, lambda: _one_run(events, batch_rows, oracle, victim)))
    def notes_of(last: dict) -> str:
        notes = (f"{count:,} events in {-(-count // batch_rows)} ingests; acknowledged {last['acknowledged']:,}, "
                 f"answers cover {last['answers_cover']}; queries during ingest {last['queries']} "
                 f"(p99 {last['latency']['p99_ms'] or 0:.1f} ms), failed {last['failed_queries']}; "
                 f"speed rebuilds {last['speed_rebuilds']}{'; healed after ingest' if last['healed_after'] else ''}"
                 f"{'; ' + last['wrong'] if last['wrong'] else ''}")
        if last["kill"]:
            notes = f"{last['kill']}; {notes}"
        return notes

    return pattern_rows(PATTERN, runs, notes_of)


def _oracle_of(events: Any, batch_rows: int) -> Any:
    from jobs.adtech import AdEventOracle

    oracle = AdEventOracle()
    for start in range(0, events.num_rows, batch_rows):
        oracle.ingest(events.slice(start, batch_rows))
    return oracle
