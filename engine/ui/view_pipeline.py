"""The view of a pipeline: per stage replicas, rows and batches, pipe depth against its bound.

``metrics()`` maps stage id (and ``"sink"``) to a ``StageMetrics`` (or its dict) with these
keys: ``replicas``, ``rows_in``, ``rows_out``, ``batches_in``, ``batches_out``,
``pipe_depth``, ``max_pipe_depth``, ``busy_s``, ``errors``, ``dead_letters``,
``replica_restarts``; other keys of a stage, and metrics that are not stages, are shown
generically.  Pipe bounds come from the spec (each stage's ``pipe_capacity``, the sink's
``options.sink_capacity``; a chained stage has none).  The handle reports no autoscaler decisions, so the page
records each change of a stage's replica count it sees (an autoscaler decision or a
``scale()`` call), with the stage's autoscale policy.
"""

from __future__ import annotations

from typing import Any

from engine.ui.plain import number
from engine.ui.view_common import GenericView, chart, leftovers, pairs, rate, table

STAGE_KEYS = ("stage_id", "replicas", "rows_in", "rows_out", "batches_in", "batches_out", "pipe_depth",
              "max_pipe_depth", "busy_s", "errors", "dead_letters", "replica_restarts")
STAGE_COLUMNS = ["stage", "replicas", "rows in", "rows out", "batches in", "batches out", "pipe depth", "bound",
                 "max depth", "ms per batch", "errors", "dead letters", "restarts"]


def _stages(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The entries of ``metrics`` that look like stage metrics (dicts with row counts)."""
    return {key: value for key, value in metrics.items()
            if isinstance(value, dict) and ("rows_in" in value or "pipe_depth" in value)}


def _link_heads(spec: Any) -> dict[str, str]:
    """Each stage id of an engine ``Pipeline`` mapped to the first stage of its link ({}
    for anything else)."""
    from engine.pipeline.flow.plan import chains
    from engine.pipeline.spec import Pipeline

    if not isinstance(spec, Pipeline):
        return {}
    return {spec.stages[i].id: spec.stages[link[0]].id for link in chains(spec) for i in link}


class PipelineView(GenericView):
    """See the module docstring for the keys it relies on."""

    kind = "pipeline"
    known_status = frozenset(("state", "error", "executor", "status"))

    def spec_info(self, spec: Any) -> dict[str, Any]:
        """Stage order, pipe bounds and autoscale policies; a stage chained after another
        (``PipelineOptions.chaining``) has no pipe, and its bound says which link it is in."""
        stages = []
        heads = _link_heads(spec)
        for stage in getattr(spec, "stages", None) or []:
            policy = getattr(stage, "autoscale", None)
            stage_id = str(getattr(stage, "id", "?"))
            bound = getattr(stage, "pipe_capacity", None) if heads.get(stage_id, stage_id) == stage_id \
                else f"chained after {heads[stage_id]}"
            stages.append({"id": stage_id, "pipe_capacity": bound,
                           "autoscale": None if policy is None else {
                               "min": getattr(policy, "min_replicas", None), "max": getattr(policy, "max_replicas", None)}})
        options = getattr(spec, "options", None)
        return {"stages": stages, "sink_capacity": getattr(options, "sink_capacity", None)}

    def _bound(self, tracker: Any, stage_id: str) -> Any:
        if stage_id == "sink":
            return tracker.spec_info.get("sink_capacity")
        for stage in tracker.spec_info.get("stages", []):
            if stage["id"] == stage_id:
                return stage.get("pipe_capacity")
        return None

    def _ordered(self, tracker: Any, stages: dict[str, dict[str, Any]]) -> list[str]:
        order = [s["id"] for s in tracker.spec_info.get("stages", [])] + ["sink"]
        return [key for key in order if key in stages] + sorted(key for key in stages if key not in order)

    def observe(self, previous: Any, sample: Any, tracker: Any) -> list[str]:
        """A change of a stage's replica count (autoscaler or ``scale()``)."""
        events = []
        before = _stages(previous.metrics) if previous is not None else {}
        policies = {s["id"]: s.get("autoscale") for s in tracker.spec_info.get("stages", [])}
        decisions = tracker.scratch.setdefault("scaling", [])
        for stage_id, now in _stages(sample.metrics).items():
            old, new = (before.get(stage_id) or {}).get("replicas"), now.get("replicas")
            if isinstance(old, int) and isinstance(new, int) and old != new:
                policy = policies.get(stage_id)
                by = f"autoscale {policy['min']}..{policy['max']}" if policy else "scale()"
                decisions.append([round(sample.t - tracker.registered_at, 1), stage_id, old, new, by])
                del decisions[:-100]
                events.append(f"stage {stage_id}: replicas {old} → {new} ({by})")
        return events

    def points(self, previous: Any, sample: Any, tracker: Any) -> dict[str, float]:
        """Pipe depth of every stage; rows per second into the sink."""
        values = super().points(previous, sample, tracker)
        stages = _stages(sample.metrics)
        for stage_id, stage in stages.items():
            if number(stage.get("pipe_depth")) is not None:
                values[f"depth:{stage_id}"] = stage["pipe_depth"]
        before = _stages(previous.metrics).get("sink", {}) if previous is not None else {}
        delivered = rate(previous, sample, number(stages.get("sink", {}).get("rows_in")), number(before.get("rows_in")))
        if delivered is not None:
            values["sink_rows_per_s"] = round(delivered, 2)
        return values

    def headline(self, tracker: Any) -> list[list[Any]]:
        """Rows delivered and dead letters."""
        stages = _stages(tracker.last.metrics) if tracker.last is not None else {}
        rows = [["rows delivered", stages.get("sink", {}).get("rows_in")],
                ["dead letters", sum(int(s.get("dead_letters") or 0) for s in stages.values()) if stages else None]]
        return [row for row in rows if row[1] is not None]

    def sections(self, tracker: Any) -> list[dict[str, Any]]:
        """The run, the stages table, scaling decisions, extra stage keys and the rest."""
        if tracker.last is None:
            return []
        status, result = tracker.last.status, tracker.result or {}
        run = pairs("run", "Run", [("state", tracker.state), ("executor", status.get("executor")),
                                   ("ended as", status.get("status") or result.get("status")),
                                   ("rows delivered", result.get("rows_delivered")),
                                   ("dead letters stored", result.get("dead_letter_count")),
                                   ("elapsed (s)", result.get("elapsed_s")), ("error", status.get("error"))])
        stages = _stages(tracker.last.metrics)
        rows, extra = [], []
        for stage_id in self._ordered(tracker, stages):
            stage = stages[stage_id]
            busy, batches = number(stage.get("busy_s")), number(stage.get("batches_out"))
            per_batch = round(1000 * busy / batches, 2) if busy is not None and batches else None
            rows.append([stage_id, stage.get("replicas"), stage.get("rows_in"), stage.get("rows_out"),
                         stage.get("batches_in"), stage.get("batches_out"), stage.get("pipe_depth"),
                         self._bound(tracker, stage_id), stage.get("max_pipe_depth"), per_batch,
                         stage.get("errors"), stage.get("dead_letters"), stage.get("replica_restarts")])
            extra += [(f"{stage_id}.{k}", v) for k, v in stage.items() if k not in STAGE_KEYS]
        sections = [run, table("stages", "Stages", STAGE_COLUMNS, rows,
                               note="ms per batch = time inside the filter / batches out") if rows else None]
        decisions = tracker.scratch.get("scaling")
        if decisions:
            sections.append(table("scaling", "Replica changes (autoscaler decisions, scale() calls)",
                                  ["t (s)", "stage", "from", "to", "by"], decisions[::-1]))
        rows_more = extra + [(f"metrics.{k}", v) for k, v in tracker.last.metrics.items() if k not in stages]
        rows_more += [(f"status.{k}", v) for k, v in leftovers(status, self.known_status)]
        if rows_more:
            sections.append(pairs("more", "More (reported, not interpreted)", rows_more))
        return [section for section in sections if section]

    def charts(self, tracker: Any) -> list[dict[str, Any]]:
        """Pipe depth per stage (against the bounds); rows delivered per second."""
        stages = _stages(tracker.last.metrics) if tracker.last is not None else {}
        order = self._ordered(tracker, stages)
        bounds = sorted({(f"bound {self._bound(tracker, s)}", self._bound(tracker, s)) for s in order
                         if number(self._bound(tracker, s)) is not None}, key=lambda item: item[1])
        found = [chart(tracker, "pipe_depth", "Pipe depth", "batches",
                       [(f"depth:{s}", s) for s in order], limits=bounds),
                 chart(tracker, "delivered", "Rows delivered per second", "rows/s",
                       [("sink_rows_per_s", "sink")])]
        return [c for c in found if c]
