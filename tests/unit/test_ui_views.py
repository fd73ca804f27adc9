"""Unit tests of what the status page shows for each kind of handle, from fake handles.

The fakes are plain Python objects implementing the Handle methods with scripted answers;
every expected table below is written out by hand from the script.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pyarrow as pa
import pytest

import engine
from engine.errors import ResultTimeoutError
from engine.pipeline.result import StageMetrics
from engine.runtime.handle import Handle
from engine.ui.registry import Registry

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted(Handle):
    """A handle whose status/metrics follow a script, one step per ``advance()``."""

    def __init__(self, statuses: list[dict], metrics: list[dict] | None = None, result: Any = None,
                 counters: dict | None = None, progress: float | None = None) -> None:
        self.statuses, self.metric_list, self.final, self.step = statuses, metrics or [{}], result, 0
        self.count, self.fraction, self.status_calls = counters or {}, progress, []

    def advance(self) -> None:
        self.step += 1

    def status(self, tasks: bool = False) -> dict:
        self.status_calls.append(tasks)
        return copy.deepcopy(self.statuses[min(self.step, len(self.statuses) - 1)])

    def metrics(self) -> dict:
        return copy.deepcopy(self.metric_list[min(self.step, len(self.metric_list) - 1)])

    def counters(self) -> Counter:
        return Counter(self.count)

    def progress(self) -> float | None:
        return self.fraction

    def result(self, timeout_s: float | None = None) -> Any:
        if self.final is None:
            raise ResultTimeoutError("not yet")
        return self.final

    def cancel(self) -> None:
        pass


def sections(document: dict) -> dict[str, dict]:
    return {section["id"]: section for section in document["sections"]}


def run_script(handle: Scripted, steps: int, registry: Registry, clock: FakeClock, dt: float = 1.0, **add: Any) -> dict:
    """Register, then sample ``steps`` times, advancing the script and the clock between samples."""
    tracker = registry.add(handle, **add)
    for step in range(steps):
        if step:
            handle.advance()
            clock.now += dt
        tracker.sample()
    return tracker.view.render(tracker)


def task(task_id: str, state: str, attempt: int = 0, running: dict | None = None, location: str | None = None,
         executions: int = 0) -> dict:
    return {"task_id": task_id, "state": state, "attempt": attempt, "running": running or {}, "location": location,
            "executions": executions}


def job_status(**changes: Any) -> dict:
    status = {"state": "running", "phase": "map", "master": "job-master-0", "role": "primary",
              "maps": {"idle": 1, "in_progress": 1, "completed": 0}, "reduces": {"idle": 1, "in_progress": 0, "completed": 0},
              "bytes_total": 200, "bytes_done": 0, "workers": ["w1", "w2"], "failed_workers": [],
              "replaced_workers": 0, "snapshot_seq": 0, "takeover": False, "speculative_attempts": 0,
              "skipped_records": 0, "error": None, "surprise": {"new": 1},
              "tasks": [task("map-00000", "in_progress", 1, {"1": "w1"}), task("map-00001", "idle"),
                        task("reduce-00000", "idle")]}
    status.update(changes)
    return status


TAKEN_OVER = job_status(
    master="job-master-1", takeover=True, snapshot_seq=3, workers=["w2", "w3"], failed_workers=["w1"],
    replaced_workers=1, speculative_attempts=1, bytes_done=100,
    maps={"idle": 0, "in_progress": 1, "completed": 1},
    tasks=[task("map-00000", "completed", 2, location="w2", executions=1),
           task("map-00001", "in_progress", 2, {"1": "w3", "2": "w2"}), task("reduce-00000", "idle")])


def test_a_mapreduce_job_shows_tasks_workers_master_and_unknown_keys() -> None:
    clock = FakeClock()
    handle = Scripted([job_status(), TAKEN_OVER], progress=0.25)
    document = run_script(handle, 2, Registry(clock=clock), clock, dt=3.0, spec=None, kind="mapreduce", name="job")
    assert set(handle.status_calls) == {True}  # the task table is asked for
    found = sections(document)
    assert found["tasks"]["columns"] == ["task", "kind", "state", "attempt", "worker", "output", "duration", "runs"]
    assert found["tasks"]["rows"] == [
        ["map-00000", "map", "completed", 2, "w2", "w2", "~3 s", 1],
        ["map-00001", "map", "in_progress", 2, "w3, w2", "", "", 0],
        ["reduce-00000", "reduce", "idle", 0, "", "", "", 0],
    ]
    assert found["phases"]["rows"] == [["map", 0, 1, 1, 2, "50%"], ["reduce", 1, 0, 0, 1, "0%"]]
    assert found["workers"]["rows"] == [["w2", "alive", 1], ["w3", "alive", 1], ["w1", "failed", ""]]
    assert found["workers"]["note"] == "1 replaced"
    job = dict(found["job"]["rows"])
    assert job["master"] == "job-master-1" and job["taken over"] is True and job["master changes seen"] == 1
    assert job["snapshot sequence"] == 3 and job["speculative attempts"] == 1
    assert job["input read"] == "100 of 200 bytes"
    assert dict(found["more"]["rows"]) == {"status.surprise": {"new": 1}}
    texts = [text for _, text in document["events"]]
    assert "master changed: job-master-0 → job-master-1" in texts
    assert "worker failed: w1" in texts
    assert "1 speculative attempt(s) started (1 in all)" in texts
    assert document["headline"] == [["phase", "map"], ["maps", "1/2"], ["reduces", "0/1"]]
    assert document["progress"] == 0.25


def test_a_succeeded_job_shows_its_final_table_from_the_summary() -> None:
    class Result:
        counters = Counter(map_input_records=5, reduce_output_records=2)
        elapsed_s = 1.5
        details = {"attempts": {"map-00000": 2, "map-00001": 1, "reduce-00000": 1},
                   "executions": {"map-00000": 1, "map-00001": 1, "reduce-00000": 1},
                   "task_workers": {"map-00000": "w2", "map-00001": "w3", "reduce-00000": "w3"},
                   "events": ["took over from snapshot 3"]}

    clock = FakeClock()
    stale = {**TAKEN_OVER, "state": "succeeded"}
    stale.pop("tasks")  # after the end the handle's status may come without the task table
    handle = Scripted([TAKEN_OVER, stale], result=Result())
    registry = Registry(clock=clock)
    document = run_script(handle, 2, registry, clock, kind="mapreduce", name="job")
    found = sections(document)
    assert [row[:5] for row in found["tasks"]["rows"]] == [
        ["map-00000", "map", "completed", 2, "w2"], ["map-00001", "map", "completed", 1, "w3"],
        ["reduce-00000", "reduce", "completed", 1, "w3"]]
    assert found["phases"]["rows"] == [["map", 0, 0, 2, 2, "100%"], ["reduce", 0, 0, 1, 1, "100%"]]
    assert found["counters"]["rows"] == [["map_input_records", 5], ["reduce_output_records", 2]]
    assert found["master_events"]["items"] == ["took over from snapshot 3"]
    assert document["headline"] == [["phase", "done"], ["maps", "2/2"], ["reduces", "1/1"]]
    assert registry.trackers()[0].active is False  # final and result in: no more sampling


def pipeline_spec() -> engine.Pipeline:
    identity = lambda table: table  # noqa: E731
    return engine.Pipeline(engine.TableSource(pa.table({"k": [1]})),
                           [engine.Stage("parse", identity, pipe_capacity=3),
                            engine.Stage("enrich", identity, pipe_capacity=5, replicas=1,
                                         autoscale=engine.AutoscalePolicy(min_replicas=1, max_replicas=3))],
                           engine.CollectSink(), engine.PipelineOptions(sink_capacity=8))


def stage_metrics(parse: dict, enrich: dict, sink: dict) -> dict:
    return {"parse": StageMetrics("parse", **parse), "enrich": StageMetrics("enrich", **enrich),
            "sink": StageMetrics("sink", **sink), "note": "not a stage"}


def test_a_pipeline_shows_stages_against_bounds_scaling_and_pipe_depths() -> None:
    clock = FakeClock()
    metrics = [
        stage_metrics({"replicas": 1, "rows_in": 10, "rows_out": 10, "batches_in": 2, "batches_out": 2, "pipe_depth": 3,
                       "max_pipe_depth": 3, "busy_s": 0.5},
                      {"replicas": 1, "pipe_depth": 1, "max_pipe_depth": 1},
                      {"replicas": 1, "rows_in": 0}),
        stage_metrics({"replicas": 1, "rows_in": 60, "rows_out": 60, "batches_in": 12, "batches_out": 10,
                       "pipe_depth": 2, "max_pipe_depth": 3, "busy_s": 1.0},
                      {"replicas": 2, "rows_in": 50, "rows_out": 50, "batches_in": 10, "batches_out": 10,
                       "pipe_depth": 5, "max_pipe_depth": 5, "busy_s": 2.0, "dead_letters": 4, "errors": 6},
                      {"replicas": 1, "rows_in": 46, "batches_in": 9, "pipe_depth": 1, "max_pipe_depth": 1}),
    ]
    handle = Scripted([{"state": "running", "executor": "ray"}], metrics)
    document = run_script(handle, 2, Registry(clock=clock), clock, dt=2.0, spec=pipeline_spec())
    assert document["kind"] == "pipeline" and document["name"] == "pipeline parse → enrich"
    found = sections(document)
    assert found["stages"]["rows"] == [
        ["parse", 1, 60, 60, 12, 10, 2, 3, 3, 100.0, 0, 0, 0],
        ["enrich", 2, 50, 50, 10, 10, 5, 5, 5, 200.0, 6, 4, 0],
        ["sink", 1, 46, 0, 9, 0, 1, 8, 1, None, 0, 0, 0],
    ]
    assert found["scaling"]["rows"] == [[2.0, "enrich", 1, 2, "autoscale 1..3"]]
    assert dict(found["more"]["rows"]) == {"metrics.note": "not a stage"}
    assert "stage enrich: replicas 1 → 2 (autoscale 1..3)" in [text for _, text in document["events"]]
    assert document["headline"] == [["rows delivered", 46], ["dead letters", 4]]
    charts = {c["id"]: c for c in document["charts"]}
    depth = {series["name"]: series["points"] for series in charts["pipe_depth"]["series"]}
    assert depth == {"parse": [[0.0, 3], [2.0, 2]], "enrich": [[0.0, 1], [2.0, 5]], "sink": [[0.0, 0], [2.0, 1]]}
    assert charts["pipe_depth"]["limits"] == [{"name": "bound 3", "value": 3}, {"name": "bound 5", "value": 5},
                                              {"name": "bound 8", "value": 8}]
    assert charts["delivered"]["series"] == [{"name": "sink", "points": [[2.0, 23.0]]}]  # 46 rows in 2 s


def test_a_chained_stage_shows_the_link_it_runs_in_instead_of_a_bound() -> None:
    clock = FakeClock()
    identity = lambda table: table  # noqa: E731
    spec = engine.Pipeline(engine.TableSource(pa.table({"k": [1]})),
                           [engine.Stage("parse", identity, pipe_capacity=3), engine.Stage("enrich", identity)],
                           engine.CollectSink())
    metrics = [stage_metrics({"replicas": 1, "pipe_depth": 3, "max_pipe_depth": 3}, {"replicas": 1}, {"replicas": 1})]
    document = run_script(Scripted([{"state": "running", "executor": "ray"}], metrics), 1, Registry(clock=clock),
                          clock, dt=1.0, spec=spec)
    bounds = {row[0]: row[7] for row in sections(document)["stages"]["rows"]}
    assert bounds == {"parse": 3, "enrich": "chained after parse", "sink": 8}
    limits = {c["id"]: c for c in document["charts"]}["pipe_depth"]["limits"]
    assert limits == [{"name": "bound 3", "value": 3}, {"name": "bound 8", "value": 8}]


def test_a_scatter_gather_service_shows_requests_partials_and_latency() -> None:
    clock = FakeClock()
    metrics = [{"requests": 10, "partial_answers": 1, "shard_errors": 0, "latency_p50_ms": 2.0, "latency_p90_ms": 3.0,
                "latency_p99_ms": 9.0},
               {"requests": 40, "partial_answers": 2, "shard_errors": 1, "failed_requests": 1, "latency_p50_ms": 2.5,
                "latency_p90_ms": 4.0, "latency_p99_ms": 12.0}]
    handle = Scripted([{"state": "running", "executor": "inline", "shards": 4}], metrics)
    document = run_script(handle, 2, Registry(clock=clock), clock, dt=3.0, kind="scatter_gather", name="search")
    assert dict(sections(document)["service"]["rows"]) == {
        "state": "running", "executor": "inline", "shards": 4, "requests": 40, "partial answers": 2,
        "failed requests": 1, "shard errors": 1, "latency p50 (ms)": 2.5, "latency p90 (ms)": 4.0,
        "latency p99 (ms)": 12.0}
    charts = {c["id"]: c for c in document["charts"]}
    assert charts["latency"]["series"] == [{"name": "p50", "points": [[0.0, 2.0], [3.0, 2.5]]},
                                           {"name": "p99", "points": [[0.0, 9.0], [3.0, 12.0]]}]
    assert charts["requests"]["series"] == [{"name": "requests", "points": [[3.0, 10.0]]}]


def test_a_lambda_deployment_shows_log_watermark_freshness_and_switches() -> None:
    clock = FakeClock()
    statuses = [{"state": "running", "log_end_offset": 1000, "batch_watermark": 600, "view_version": 600,
                 "last_switch_at": None, "rejected_events": 3},
                {"state": "running", "log_end_offset": 1500, "batch_watermark": 1000, "view_version": 1000,
                 "duplicate_events": 2, "rejected_events": 3, "speed_shards": 4}]
    metrics = [{"freshness_s": {"p50": 0.2, "p99": 0.9}}, {"freshness_s": {"p50": 0.3, "p99": 1.1}}]
    handle = Scripted(statuses, metrics)
    document = run_script(handle, 2, Registry(clock=clock), clock, dt=5.0, kind="lambda", name="adtech")
    rows = dict(sections(document)["lambda"]["rows"])
    assert rows["log end offset"] == 1500 and rows["batch watermark W"] == 1000
    assert rows["events after W (speed layer)"] == 500
    assert rows["ingest (events/s)"] == 100.0  # (1500 - 1000) offsets in 5 s, derived
    assert rows["rejected events"] == 3 and rows["duplicate events"] == 2 and rows["view version"] == 1000
    assert rows["freshness p50 (s)"] == 0.3 and rows["freshness p99 (s)"] == 1.1
    assert dict(sections(document)["more"]["rows"]) == {"status.speed_shards": 4}
    assert "batch view switched: version 600 → 1000" in [text for _, text in document["events"]]
    charts = {c["id"]: c for c in document["charts"]}
    assert charts["freshness"]["series"] == [{"name": "p50", "points": [[0.0, 0.2], [5.0, 0.3]]},
                                             {"name": "p99", "points": [[0.0, 0.9], [5.0, 1.1]]}]
    assert charts["offsets"]["series"] == [{"name": "log end", "points": [[0.0, 1000], [5.0, 1500]]},
                                           {"name": "W", "points": [[0.0, 600], [5.0, 1000]]}]


def test_a_handle_of_unknown_kind_is_shown_generically() -> None:
    clock = FakeClock()
    handle = Scripted([{"state": "running", "whatever": [1, 2]}], [{"speed": 3.5}], counters={"things": 2},
                      progress=0.5)
    document = run_script(handle, 1, Registry(clock=clock), clock)
    assert document["kind"] == "other"
    found = sections(document)
    assert found["status"]["rows"] == [["whatever", [1, 2]]]
    assert found["metrics"]["rows"] == [["speed", 3.5]]
    assert found["counters"]["rows"] == [["things", 2]]
    assert document["charts"][0]["series"] == [{"name": "progress", "points": [[0.0, 50.0]]}]


def test_untrusted_strings_reach_the_document_unchanged_as_data() -> None:
    clock = FakeClock()
    evil = '<img src=x onerror="alert(1)">'
    handle = Scripted([{"state": "failed", "error": evil}], result=None)
    document = run_script(handle, 1, Registry(clock=clock), clock, kind="pipeline", name=f"{evil} name")
    assert document["name"] == f"{evil} name" and document["error"] == evil
