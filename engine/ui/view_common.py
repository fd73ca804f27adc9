"""What every pattern's view shares: the document shape the page renders, and a generic view.

A handle's document is plain data::

    {"id", "kind", "name", "executor", "state", "progress", "registered_at", "finished_at",
     "released", "error", "headline": [[label, value], ...],
     "sections": [{"id", "title", "type": "pairs" | "table" | "list", ...}],
     "charts": [{"id", "title", "unit", "series": [{"name", "points": [[t, v], ...]}],
                 "limits": [{"name", "value"}]}],
     "events": [[t, text], ...],            # newest first; t in seconds since registration
     "raw": {"status", "metrics", "counters", "result"}}

A "pairs" section has ``rows`` of ``[label, value]``; a "table" section ``columns`` and
``rows`` (lists of cells); a "list" section ``items`` (strings).  The page renders every
section and chart the same way whatever the pattern, so the patterns' views only decide
*what* to show.  Keys a view does not know are shown in a generic "More" section, so
nothing a handle reports is hidden while its shape changes.
"""

from __future__ import annotations

from typing import Any, Iterable

from engine.ui.plain import number

MAX_TABLE_ROWS = 2000


def pairs(section_id: str, title: str, rows: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """A two-column section; rows whose value is None are left out."""
    return {"id": section_id, "title": title, "type": "pairs",
            "rows": [[label, value] for label, value in rows if value is not None]}


def table(section_id: str, title: str, columns: list[str], rows: list[list[Any]], note: str | None = None) -> dict:
    """A table section, cut at ``MAX_TABLE_ROWS`` rows (the note says so)."""
    if len(rows) > MAX_TABLE_ROWS:
        note = f"{(note + '; ') if note else ''}showing {MAX_TABLE_ROWS} of {len(rows)} rows"
        rows = rows[:MAX_TABLE_ROWS]
    section: dict[str, Any] = {"id": section_id, "title": title, "type": "table", "columns": columns, "rows": rows}
    if note:
        section["note"] = note
    return section


def leftovers(source: dict[str, Any], known: Iterable[str]) -> list[tuple[str, Any]]:
    """The ``(key, value)`` pairs of ``source`` whose keys are not in ``known``."""
    known = set(known)
    return [(key, value) for key, value in source.items() if key not in known]


def rate(previous: Any, sample: Any, value_now: float | None, value_before: float | None) -> float | None:
    """Per-second change between two samples (None without both values or with no time between)."""
    if previous is None or value_now is None or value_before is None:
        return None
    elapsed = sample.t - previous.t
    return max(0.0, (value_now - value_before) / elapsed) if elapsed > 0 else None


def chart(tracker: Any, chart_id: str, title: str, unit: str, series: list[tuple[str, str]],
          limits: list[tuple[str, float]] | None = None) -> dict[str, Any] | None:
    """A line chart from the tracker's history: ``series`` are ``(point key, label)``;
    None when no series has a point yet."""
    out = []
    for key, label in series:
        points = [[round(t - tracker.registered_at, 2), values[key]] for t, values in tracker.history
                  if number(values.get(key)) is not None]
        if points:
            out.append({"name": label, "points": points})
    if not out:
        return None
    return {"id": chart_id, "title": title, "unit": unit, "series": out,
            "limits": [{"name": name, "value": value} for name, value in (limits or [])]}


class GenericView:
    """The view of a handle of an unknown kind, and the base of the patterns' views."""

    kind = "other"
    status_kwargs: dict[str, Any] = {}
    known_status: frozenset[str] = frozenset({"state", "error"})
    known_metrics: frozenset[str] = frozenset()

    def spec_info(self, spec: Any) -> dict[str, Any]:
        """What the page needs from the spec (bounds, names); read once, at registration."""
        return {}

    def observe(self, previous: Any, sample: Any, tracker: Any) -> list[str]:
        """Events to record from the change between two samples."""
        return []

    def points(self, previous: Any, sample: Any, tracker: Any) -> dict[str, float]:
        """The numbers of this sample kept in the history (for charts)."""
        return {"progress": round(100 * sample.progress, 2)} if sample.progress is not None else {}

    def headline(self, tracker: Any) -> list[list[Any]]:
        """A few key facts shown beside the name."""
        return []

    def sections(self, tracker: Any) -> list[dict[str, Any]]:
        """Everything reported, as generic sections."""
        last = tracker.last
        if last is None:
            return []
        sections = [pairs("status", "Status", leftovers(last.status, self.known_status)),
                    pairs("metrics", "Metrics", leftovers(last.metrics, self.known_metrics)),
                    self.counters_section(tracker)]
        return [section for section in sections if section and section.get("rows")]

    def counters_section(self, tracker: Any) -> dict[str, Any] | None:
        """Counters (the final ones once the result is in)."""
        counters = dict(tracker.last.counters) if tracker.last is not None else {}
        final = (tracker.result or {}).get("counters")
        if isinstance(final, dict) and final:
            counters = final
        if not counters:
            return None
        return table("counters", "Counters", ["counter", "value"], [[k, counters[k]] for k in sorted(counters)])

    def more_section(self, tracker: Any) -> dict[str, Any] | None:
        """Keys of status() and metrics() this view does not know (shown as they are)."""
        last = tracker.last
        if last is None:
            return None
        rows = [(f"status.{k}", v) for k, v in leftovers(last.status, self.known_status)]
        rows += [(f"metrics.{k}", v) for k, v in leftovers(last.metrics, self.known_metrics)]
        return pairs("more", "More (reported, not interpreted)", rows) if rows else None

    def charts(self, tracker: Any) -> list[dict[str, Any]]:
        """Charts of the history (progress, for a generic handle)."""
        return [c for c in [chart(tracker, "progress", "Progress", "%", [("progress", "progress")])] if c]

    def render(self, tracker: Any) -> dict[str, Any]:
        """The handle's whole document (see the module docstring)."""
        last = tracker.last
        status = last.status if last is not None else {}
        error = tracker.result_error or status.get("error")
        return {
            "id": tracker.id, "kind": tracker.kind, "name": tracker.name,
            "executor": status.get("executor") or tracker.executor,
            "state": tracker.state, "progress": last.progress if last is not None else None,
            "registered_at": tracker.registered_at, "finished_at": tracker.finished_at,
            "released": tracker.released, "error": str(error) if error else None,
            "headline": self.headline(tracker),
            "sections": [s for s in self.sections(tracker) if s],
            "charts": self.charts(tracker),
            "events": [[round(t - tracker.registered_at, 1), text] for t, text in reversed(tracker.events)],
            "raw": {"status": status, "metrics": last.metrics if last is not None else {},
                    "counters": last.counters if last is not None else {}, "result": tracker.result},
        }
