"""The views of open-ended work: scatter-gather services and Lambda deployments.

Scatter-gather (``ScatterGatherService``): ``status()`` ``shards``; ``metrics()``
``requests``, ``partial_answers``, ``failed_requests``, ``shard_errors``,
``latency_p50_ms``, ``latency_p90_ms``, ``latency_p99_ms``.

Lambda (read from ``status()`` and ``metrics()`` together, metrics winning):
``log_end_offset``, ``batch_watermark`` (W, the offset the batch views cover),
``visible_offset`` (what queries see), ``freshness_s`` (a number, or percentiles such as
``{"p50": s, "p99": s}``), ``ingest_events_per_s`` (derived from the log end offset when
absent), ``rejected_events``, ``duplicate_events``, ``view_version``, ``last_switch_at``
(Unix seconds).  Other keys are shown generically.
"""

from __future__ import annotations

import time
from typing import Any

from engine.ui.plain import number
from engine.ui.view_common import GenericView, chart, pairs, rate

SG_METRICS = ("requests", "partial_answers", "failed_requests", "shard_errors", "latency_p50_ms", "latency_p90_ms",
              "latency_p99_ms")
LAMBDA_KEYS = ("log_end_offset", "batch_watermark", "visible_offset", "freshness_s", "ingest_events_per_s",
               "rejected_events", "duplicate_events", "view_version", "last_switch_at")


class ScatterGatherView(GenericView):
    """See the module docstring for the keys it relies on."""

    kind = "scatter_gather"
    known_status = frozenset(("state", "error", "executor", "shards"))
    known_metrics = frozenset(SG_METRICS)

    def points(self, previous: Any, sample: Any, tracker: Any) -> dict[str, float]:
        """Latency percentiles and requests per second."""
        values: dict[str, float] = {}
        for q in ("p50", "p99"):
            latency = number(sample.metrics.get(f"latency_{q}_ms"))
            if latency is not None:
                values[f"latency_{q}_ms"] = round(latency, 3)
        requests = rate(previous, sample, number(sample.metrics.get("requests")),
                        number(previous.metrics.get("requests")) if previous is not None else None)
        if requests is not None:
            values["requests_per_s"] = round(requests, 2)
        return values

    def headline(self, tracker: Any) -> list[list[Any]]:
        """Requests and p99 latency."""
        metrics = tracker.last.metrics if tracker.last is not None else {}
        rows = [["requests", metrics.get("requests")], ["p99 ms", metrics.get("latency_p99_ms")]]
        return [row for row in rows if row[1] is not None]

    def sections(self, tracker: Any) -> list[dict[str, Any]]:
        """Requests, partial answers, errors and latency percentiles."""
        if tracker.last is None:
            return []
        status, metrics = tracker.last.status, tracker.last.metrics
        service = pairs("service", "Service", [
            ("state", tracker.state), ("executor", status.get("executor")), ("shards", status.get("shards")),
            ("requests", metrics.get("requests")), ("partial answers", metrics.get("partial_answers")),
            ("failed requests", metrics.get("failed_requests")), ("shard errors", metrics.get("shard_errors")),
            ("latency p50 (ms)", metrics.get("latency_p50_ms")), ("latency p90 (ms)", metrics.get("latency_p90_ms")),
            ("latency p99 (ms)", metrics.get("latency_p99_ms")), ("error", status.get("error"))])
        return [s for s in (service, self.more_section(tracker)) if s]

    def charts(self, tracker: Any) -> list[dict[str, Any]]:
        """Latency over time; requests per second."""
        found = [chart(tracker, "latency", "Latency", "ms", [("latency_p50_ms", "p50"), ("latency_p99_ms", "p99")]),
                 chart(tracker, "requests", "Requests per second", "req/s", [("requests_per_s", "requests")])]
        return [c for c in found if c]


def _lambda_values(sample: Any) -> dict[str, Any]:
    return {**sample.status, **sample.metrics} if sample is not None else {}


def _freshness(value: Any) -> dict[str, float]:
    """``freshness_s`` as named numbers: ``{"freshness": s}`` or one per percentile."""
    if number(value) is not None:
        return {"freshness": float(value)}
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items() if number(v) is not None}
    return {}


class LambdaView(GenericView):
    """See the module docstring for the keys it relies on."""

    kind = "lambda"
    known_status = frozenset(("state", "error", "executor") + LAMBDA_KEYS)
    known_metrics = frozenset(LAMBDA_KEYS)

    def observe(self, previous: Any, sample: Any, tracker: Any) -> list[str]:
        """A switch to a new batch view."""
        now, before = _lambda_values(sample).get("view_version"), _lambda_values(previous).get("view_version")
        if previous is not None and now is not None and before is not None and now != before:
            return [f"batch view switched: version {before} → {now}"]
        return []

    def points(self, previous: Any, sample: Any, tracker: Any) -> dict[str, float]:
        """Freshness, log end offset, W and the ingest rate."""
        values_now, values_before = _lambda_values(sample), _lambda_values(previous)
        points = {f"freshness:{k}": round(v, 4) for k, v in _freshness(values_now.get("freshness_s")).items()}
        for key in ("log_end_offset", "batch_watermark"):
            if number(values_now.get(key)) is not None:
                points[key] = values_now[key]
        ingest = number(values_now.get("ingest_events_per_s"))
        if ingest is None:
            ingest = rate(previous, sample, number(values_now.get("log_end_offset")),
                          number(values_before.get("log_end_offset")))
        if ingest is not None:
            points["ingest_events_per_s"] = round(ingest, 2)
        return points

    def headline(self, tracker: Any) -> list[list[Any]]:
        """Log end offset and W."""
        values = _lambda_values(tracker.last)
        rows = [["log end", values.get("log_end_offset")], ["W", values.get("batch_watermark")]]
        return [row for row in rows if row[1] is not None]

    def sections(self, tracker: Any) -> list[dict[str, Any]]:
        """The log, the batch and speed layers, the serving view, and the rest."""
        if tracker.last is None:
            return []
        values = _lambda_values(tracker.last)
        end, watermark = number(values.get("log_end_offset")), number(values.get("batch_watermark"))
        switched = number(values.get("last_switch_at"))
        ingest = tracker.history[-1][1].get("ingest_events_per_s") if tracker.history else None
        freshness = _freshness(values.get("freshness_s"))
        rows = [("state", tracker.state), ("executor", values.get("executor")),
                ("log end offset", values.get("log_end_offset")), ("batch watermark W", values.get("batch_watermark")),
                ("events after W (speed layer)", int(end - watermark) if end is not None and watermark is not None
                 else None),
                ("visible offset", values.get("visible_offset")),
                ("ingest (events/s)", ingest),
                ("rejected events", values.get("rejected_events")),
                ("duplicate events", values.get("duplicate_events")),
                ("view version", values.get("view_version")),
                ("last switch", time.strftime("%H:%M:%S", time.localtime(switched)) if switched else None),
                ("error", values.get("error"))]
        rows += [(f"freshness {name} (s)", value) for name, value in freshness.items()]
        return [s for s in (pairs("lambda", "Lambda", rows), self.counters_section(tracker),
                            self.more_section(tracker)) if s]

    def charts(self, tracker: Any) -> list[dict[str, Any]]:
        """Freshness over time; log end offset against W; ingest rate."""
        names = sorted({key for _, values in tracker.history for key in values if key.startswith("freshness:")})
        found = [chart(tracker, "freshness", "Freshness (ack to visible)", "s",
                       [(name, name.split(":", 1)[1]) for name in names]),
                 chart(tracker, "offsets", "Log end offset and W", "offset",
                       [("log_end_offset", "log end"), ("batch_watermark", "W")]),
                 chart(tracker, "ingest", "Ingest rate", "events/s", [("ingest_events_per_s", "events/s")])]
        return [c for c in found if c]
