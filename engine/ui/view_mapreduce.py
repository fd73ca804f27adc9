"""The view of a MapReduce job: phases, the task table, workers, the master, counters.

It reads the master's status (``JobHandle.status(tasks=True)``) by these keys, and shows
any other key generically:

- job: ``state``, ``phase``, ``master``, ``role``, ``takeover``, ``snapshot_seq``,
  ``speculative_attempts``, ``skipped_records``, ``bytes_done``, ``bytes_total``,
  ``elapsed_s``, ``error``, ``executor``, ``events`` (list of strings), ``timeline``;
- phases: ``maps`` and ``reduces``, each ``{"idle": n, "in_progress": n, "completed": n}``;
- workers: ``workers`` (alive names), ``failed_workers`` (names), ``replaced_workers`` (n);
- tasks: ``tasks``, a list of ``{"task_id", "state", "attempt", "running": {attempt:
  worker}, "executions", "location"}`` (optional: ``kind``, ``worker``, ``duration_s``).

Once the job has succeeded, the result's ``details`` (the master's summary: ``attempts``,
``executions``, ``task_workers``, ``counters``, ``events``, ...) complete the table.  When
the master does not report a task's duration, the page shows the time between the
samples that first saw the task running and completed (marked "~").
"""

from __future__ import annotations

from typing import Any

from engine.ui.plain import number
from engine.ui.view_common import GenericView, chart, pairs, table

PHASES = ("maps", "reduces")
TASK_STATES = ("idle", "in_progress", "completed")
JOB_KEYS = ("state", "phase", "master", "role", "takeover", "snapshot_seq", "speculative_attempts",
            "skipped_records", "bytes_done", "bytes_total", "elapsed_s", "error", "executor", "events", "timeline",
            "map_tasks", "reduce_tasks")
WORKER_KEYS = ("workers", "failed_workers", "replaced_workers")
TASK_COLUMNS = ["task", "kind", "state", "attempt", "worker", "output", "duration", "runs"]


def _task_kind(entry: dict[str, Any]) -> str:
    kind = entry.get("kind")
    if isinstance(kind, str):
        return kind
    prefix = str(entry.get("task_id", "")).split("-", 1)[0]
    return prefix if prefix in ("map", "reduce") else ""


def _running_workers(entry: dict[str, Any]) -> list[str]:
    running = entry.get("running")
    return [str(worker) for worker in running.values()] if isinstance(running, dict) else []


class MapReduceView(GenericView):
    """See the module docstring for the keys it relies on."""

    kind = "mapreduce"
    status_kwargs = {"tasks": True}
    known_status = frozenset(JOB_KEYS + PHASES + WORKER_KEYS + ("tasks",))
    known_metrics = frozenset(("maps", "reduces", "bytes_total", "bytes_done", "snapshot_seq", "speculative_attempts",
                               "failed_workers", "elapsed_s", "timeline", "map_tasks", "reduce_tasks"))

    def _info(self, tracker: Any) -> dict[str, Any]:
        """Status, completed by the final summary once the job has succeeded."""
        info = dict(tracker.last.status) if tracker.last is not None else {}
        result = tracker.result or {}
        for source in (result, result.get("details")):
            if isinstance(source, dict):
                info.update({k: v for k, v in source.items() if k not in ("state", "tasks", "details") and v})
        if tracker.state == "succeeded":  # the last status may predate the end: every task is done
            info["phase"] = "done"
            tasks = self._tasks(tracker, info)
            for phase in PHASES:
                kind = phase[:-1]
                total = sum(1 for t in tasks if _task_kind(t) == kind) or info.get(f"{kind}_tasks")
                if isinstance(total, int) and total:
                    info[phase] = {"idle": 0, "in_progress": 0, "completed": total}
        return info

    def observe(self, previous: Any, sample: Any, tracker: Any) -> list[str]:
        """Task start/finish times, workers seen running tasks, master changes, lost workers."""
        seen = tracker.scratch.setdefault("tasks", {})
        entries = tracker.scratch.setdefault("entries", {})
        for entry in sample.status.get("tasks") or []:
            if not isinstance(entry, dict) or "task_id" not in entry:
                continue
            entries[str(entry["task_id"])] = entry
            times = seen.setdefault(str(entry["task_id"]), {"workers": []})
            if entry.get("state") == "in_progress":
                times.setdefault("started", sample.t)
                for worker in _running_workers(entry):
                    if worker not in times["workers"]:
                        times["workers"].append(worker)
            elif entry.get("state") == "completed":
                times.setdefault("finished", sample.t)
            elif entry.get("state") == "idle":  # sent back to idle (lost worker, failed attempt)
                times.pop("started", None)
                times.pop("finished", None)
        events = []
        before = previous.status if previous is not None else {}
        master = sample.status.get("master")
        if master and before.get("master") and master != before.get("master"):
            tracker.scratch["takeovers"] = tracker.scratch.get("takeovers", 0) + 1
            events.append(f"master changed: {before.get('master')} → {master}")
        for worker in sample.status.get("failed_workers") or []:
            if worker not in (before.get("failed_workers") or []):
                events.append(f"worker failed: {worker}")
        spec_now, spec_before = sample.status.get("speculative_attempts"), before.get("speculative_attempts")
        if isinstance(spec_now, int) and isinstance(spec_before, int) and spec_now > spec_before:
            events.append(f"{spec_now - spec_before} speculative attempt(s) started ({spec_now} in all)")
        return events

    def points(self, previous: Any, sample: Any, tracker: Any) -> dict[str, float]:
        """Progress in %, and completed maps and reduces."""
        values = super().points(previous, sample, tracker)
        for phase in PHASES:
            counts = sample.status.get(phase)
            if isinstance(counts, dict) and number(counts.get("completed")) is not None:
                values[f"{phase}_completed"] = counts["completed"]
        return values

    def _tasks(self, tracker: Any, info: dict[str, Any]) -> list[dict[str, Any]]:
        """One dict per task: the newest entry the master reported for it (a status without
        tasks, e.g. after the job ended, keeps the last ones), completed by the summary."""
        tasks = {key: dict(entry) for key, entry in tracker.scratch.get("entries", {}).items()}
        attempts = info.get("attempts")
        if tracker.state == "succeeded" and isinstance(attempts, dict):
            executions = info.get("executions") if isinstance(info.get("executions"), dict) else {}
            workers = info.get("task_workers") if isinstance(info.get("task_workers"), dict) else {}
            for task_id, attempt in attempts.items():
                entry = tasks.setdefault(task_id, {"task_id": task_id})
                entry.update(state="completed", attempt=attempt, running={})
                if executions.get(task_id) is not None:
                    entry["executions"] = executions[task_id]
                if workers.get(task_id):
                    entry["worker"] = workers[task_id]
        return [tasks[key] for key in sorted(tasks)]

    def _task_row(self, entry: dict[str, Any], seen: dict[str, Any]) -> list[Any]:
        times = seen.get(str(entry["task_id"]), {})
        kind = _task_kind(entry)
        worker = entry.get("worker") or ", ".join(_running_workers(entry))
        if not worker and entry.get("state") == "completed":
            worker = (entry.get("location") if kind == "map" else None) or ", ".join(times.get("workers", []))
        duration = number(entry.get("duration_s"))
        if duration is not None:
            shown = f"{duration:.2f} s"
        elif "started" in times and "finished" in times:
            shown = f"~{max(0.0, times['finished'] - times['started']):.0f} s"
        else:
            shown = ""
        return [entry["task_id"], kind, entry.get("state"), entry.get("attempt"), worker or "",
                entry.get("location") or "", shown, entry.get("executions")]

    def headline(self, tracker: Any) -> list[list[Any]]:
        """Phase and task counts."""
        info = self._info(tracker)
        rows = [["phase", info.get("phase")]]
        for phase in PHASES:
            counts = info.get(phase)
            if isinstance(counts, dict):
                rows.append([phase, f"{counts.get('completed', 0)}/{sum(v for v in counts.values() if number(v))}"])
        return [row for row in rows if row[1] is not None]

    def sections(self, tracker: Any) -> list[dict[str, Any]]:
        """Job, phases, tasks, workers, counters, master events and the unknown keys."""
        if tracker.last is None:
            return []
        info = self._info(tracker)
        tasks = self._tasks(tracker, info)
        seen = tracker.scratch.get("tasks", {})
        done, total = info.get("bytes_done"), info.get("bytes_total")
        job = pairs("job", "Job", [
            ("state", tracker.state), ("phase", info.get("phase")), ("master", info.get("master")),
            ("role", info.get("role")), ("taken over", info.get("takeover")),
            ("master changes seen", tracker.scratch.get("takeovers", 0) if info.get("master") else None),
            ("snapshot sequence", info.get("snapshot_seq")),
            ("speculative attempts", info.get("speculative_attempts")),
            ("skipped records", info.get("skipped_records")),
            ("input read", f"{done:,} of {total:,} bytes" if number(done) is not None and number(total) else None),
            ("map tasks", info.get("map_tasks")), ("reduce tasks", info.get("reduce_tasks")),
            ("elapsed (s)", info.get("elapsed_s")), ("error", info.get("error")),
        ])
        sections = [job, self._phases(info),
                    table("tasks", "Tasks", TASK_COLUMNS, [self._task_row(entry, seen) for entry in tasks],
                          note="duration: ~ = seen by the page's sampling") if tasks else None,
                    self._workers(info, tasks), self.counters_section(tracker)]
        events = info.get("events")
        if isinstance(events, list) and events:
            sections.append({"id": "master_events", "title": "Master events", "type": "list",
                             "items": [str(event) for event in events[-100:]][::-1]})
        sections.append(self.more_section(tracker))
        return [section for section in sections if section]

    def _phases(self, info: dict[str, Any]) -> dict[str, Any] | None:
        rows = []
        for phase in PHASES:
            counts = info.get(phase)
            if not isinstance(counts, dict):
                continue
            total = sum(int(v) for v in counts.values() if number(v) is not None)
            done = counts.get("completed", 0)
            rows.append([phase[:-1]] + [counts.get(state, 0) for state in TASK_STATES]
                        + [total, f"{100 * done / total:.0f}%" if total else ""])
        if not rows:
            return None
        return table("phases", "Progress per phase", ["phase", *TASK_STATES, "total", "done"], rows)

    def _workers(self, info: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
        alive = [str(w) for w in info.get("workers") or []]
        failed = [str(w) for w in info.get("failed_workers") or []]
        if not alive and not failed:
            return None
        busy: dict[str, int] = {}
        for entry in tasks:
            for worker in _running_workers(entry):
                busy[worker] = busy.get(worker, 0) + 1
        rows = [[name, "alive", busy.get(name, 0)] for name in alive]
        rows += [[name, "failed", ""] for name in failed if name not in alive]
        note = f"{info.get('replaced_workers')} replaced" if info.get("replaced_workers") else None
        return table("workers", "Workers", ["worker", "state", "attempts running"], rows, note=note)

    def charts(self, tracker: Any) -> list[dict[str, Any]]:
        """Progress over time; completed tasks per phase over time."""
        found = [chart(tracker, "progress", "Progress", "%", [("progress", "progress")], limits=[("done", 100)]),
                 chart(tracker, "tasks_completed", "Tasks completed", "tasks",
                       [("maps_completed", "maps"), ("reduces_completed", "reduces")])]
        return [c for c in found if c]
