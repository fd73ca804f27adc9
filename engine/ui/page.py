"""The status page: one static HTML document with its style and script inline.

Nothing in it comes from a run: the script fetches ``/api/status`` every second and
builds the page with DOM calls (``textContent``, ``setAttribute``, SVG elements), never
by parsing HTML, so a job name or an error message cannot inject markup.  The server
sends a Content-Security-Policy that allows exactly this style and this script (by
hash), requests to this server only, and nothing from anywhere else.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1f2328}
header{display:flex;gap:1em;align-items:baseline;padding:.6em 1.2em;background:#1f2937;color:#f9fafb}
header h1{font-size:1.1em;margin:0}header a{color:#93c5fd}
.conn{padding:.1em .5em;border-radius:.3em;background:#6b7280}.conn.ok{background:#15803d}.conn.bad{background:#b91c1c}
main{padding:1em 1.2em}.empty{color:#57606a}
.card{background:#fff;border:1px solid #d0d7de;border-left:6px solid #6b7280;border-radius:.4em;margin:0 0 1em;
padding:.6em 1em}
.card.st-running{border-left-color:#2563eb}.card.st-succeeded{border-left-color:#16a34a}
.card.st-failed{border-left-color:#dc2626}.card.st-cancelled{border-left-color:#a16207}
.title{display:flex;flex-wrap:wrap;gap:.6em;align-items:baseline}.title h2{font-size:1.1em;margin:0}
.badge{font-size:.8em;padding:.05em .45em;border-radius:.3em;background:#eef1f4;border:1px solid #d0d7de}
.badge.st-running{background:#dbeafe}.badge.st-succeeded{background:#dcfce7}.badge.st-failed{background:#fee2e2}
.headline{color:#57606a}.bar{height:.5em;background:#eef1f4;border-radius:.25em;margin:.4em 0;overflow:hidden}
.bar>div{height:100%;background:#2563eb}.error{color:#b91c1c;white-space:pre-wrap;font-family:monospace}
.grid{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
h3{font-size:.95em;margin:.8em 0 .3em}table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #e1e4e8;padding:.15em .5em;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}.scroll{max-height:22em;overflow:auto}
td.st-completed{color:#15803d}td.st-in_progress{color:#1d4ed8;font-weight:600}td.st-idle{color:#6b7280}
td.st-alive{color:#15803d}td.st-failed{color:#b91c1c}
.note{color:#57606a;font-size:.85em}svg.chart{background:#fcfcfd;border:1px solid #e1e4e8}
svg text{font-size:10px;fill:#57606a}.legend span{margin-right:.8em;font-size:.85em}
.legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:middle}
ul.events{margin:.2em 0;padding-left:1.2em;max-height:14em;overflow:auto;font-size:.9em}
"""

SCRIPT = r"""
"use strict";
(function () {
  const token = new URLSearchParams(window.location.search).get("token") || "";
  const api = "/api/status?token=" + encodeURIComponent(token);
  const root = document.getElementById("handles");
  const conn = document.getElementById("conn");
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];
  let updates = 0;
  document.getElementById("json").href = api;

  function cls(value) { return String(value).toLowerCase().replace(/[^a-z0-9_]/g, ""); }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    for (const child of children) node.append(child instanceof Node ? child : fmt(child));
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }
  function fmt(value) {
    if (value === null || value === undefined) return "–";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (typeof value === "number") {
      return value.toLocaleString("en-US", {maximumFractionDigits: Number.isInteger(value) ? 0 : 3});
    }
    if (typeof value === "string") return value;
    return JSON.stringify(value);
  }

  function pairsSection(section) {
    const body = el("tbody");
    for (const [label, value] of section.rows) body.append(el("tr", {}, el("th", {}, label), el("td", {}, value)));
    return el("table", {class: "pairs"}, body);
  }
  function tableSection(section) {
    const head = el("tr");
    for (const column of section.columns) head.append(el("th", {}, column));
    const body = el("tbody");
    for (const row of section.rows) {
      const tr = el("tr");
      row.forEach((cell, i) => {
        const column = section.columns[i];
        const klass = column === "state" ? "st st-" + cls(cell) : (typeof cell === "number" ? "num" : "");
        tr.append(el("td", {class: klass, "data-column": column}, cell));
      });
      body.append(tr);
    }
    const wrap = el("div", {class: "scroll", "data-keep": section.id}, el("table", {}, el("thead", {}, head), body));
    return section.note ? el("div", {}, wrap, el("div", {class: "note"}, section.note)) : wrap;
  }
  function section(handle, s) {
    let content;
    if (s.type === "table") content = tableSection(s);
    else if (s.type === "list") content = el("ul", {class: "events"}, ...s.items.map((item) => el("li", {}, item)));
    else content = pairsSection(s);
    return el("div", {class: "section", "data-section": s.id}, el("h3", {}, s.title), content);
  }

  function chart(c) {
    const W = 380, H = 150, L = 46, R = 10, T = 10, B = 22;
    const all = c.series.flatMap((s) => s.points);
    const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]).concat(c.limits.map((l) => l.value));
    let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(0, ...ys), y1 = Math.max(...ys);
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1; else y1 = y1 * 1.05;
    const X = (x) => L + (W - L - R) * (x - x0) / (x1 - x0), Y = (y) => H - B - (H - T - B) * (y - y0) / (y1 - y0);
    const box = svg("svg", {class: "chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img"});
    box.append(svg("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#8c959f"}));
    box.append(svg("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#8c959f"}));
    const label = (x, y, text, anchor) => {
      const t = svg("text", {x: x, y: y, "text-anchor": anchor}); t.textContent = text; box.append(t);
    };
    label(L - 4, T + 8, fmt(Number(y1.toPrecision(3))), "end"); label(L - 4, H - B, fmt(y0), "end");
    label(L, H - 6, fmt(x0) + " s", "start"); label(W - R, H - 6, fmt(x1) + " s", "end");
    for (const limit of c.limits) {
      box.append(svg("line", {x1: L, x2: W - R, y1: Y(limit.value), y2: Y(limit.value), stroke: "#9ca3af",
                              "stroke-dasharray": "4 3"}));
      label(W - R - 2, Y(limit.value) - 3, limit.name, "end");
    }
    const legend = el("div", {class: "legend"});
    c.series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      const points = s.points.map((p) => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" ");
      box.append(s.points.length > 1
        ? svg("polyline", {points: points, fill: "none", stroke: color, "stroke-width": 2})
        : svg("circle", {cx: X(s.points[0][0]), cy: Y(s.points[0][1]), r: 3, fill: color}));
      const swatch = el("i"); swatch.style.background = color;
      legend.append(el("span", {}, swatch, s.name));
    });
    return el("div", {class: "section", "data-chart": c.id}, el("h3", {}, c.title + " (" + c.unit + ")"), box, legend);
  }

  function card(h) {
    const state = cls(h.state);
    const title = el("div", {class: "title"}, el("h2", {}, h.name), el("span", {class: "badge"}, h.kind),
                     el("span", {class: "badge"}, h.executor || "?"),
                     el("span", {class: "badge state st-" + state, "data-field": "state"}, h.state));
    if (h.released) title.append(el("span", {class: "badge"}, "handle released"));
    const line = (h.headline || []).map(([k, v]) => k + " " + fmt(v));
    if (h.progress !== null && h.progress !== undefined) line.unshift(Math.round(100 * h.progress) + "%");
    title.append(el("span", {class: "headline"}, line.join(" · ")));
    const node = el("section", {class: "card st-" + state, "data-handle-id": h.id, "data-kind": h.kind,
                                "data-state": h.state}, title);
    if (h.progress !== null && h.progress !== undefined) {
      const fill = el("div"); fill.style.width = Math.max(0, Math.min(100, 100 * h.progress)) + "%";
      node.append(el("div", {class: "bar"}, fill));
    }
    if (h.error) node.append(el("div", {class: "error", "data-field": "error"}, h.error));
    const sections = h.sections || [], wide = sections.filter((s) => s.id === "tasks" || s.id === "stages");
    node.append(el("div", {class: "grid"}, ...sections.filter((s) => !wide.includes(s)).map((s) => section(h, s))));
    for (const s of wide) node.append(section(h, s));
    if ((h.charts || []).length) node.append(el("div", {class: "grid"}, ...h.charts.map(chart)));
    if ((h.events || []).length) {
      const items = h.events.map(([t, text]) => el("li", {}, "+" + fmt(t) + " s  " + text));
      node.append(el("div", {class: "section", "data-section": "events"}, el("h3", {}, "Events"),
                     el("ul", {class: "events", "data-keep": "events"}, ...items)));
    }
    return node;
  }

  function render(doc) {
    const scrolls = new Map();
    for (const node of root.querySelectorAll("[data-keep]")) {
      const owner = node.closest("[data-handle-id]");
      scrolls.set((owner ? owner.dataset.handleId : "") + "/" + node.dataset.keep, node.scrollTop);
    }
    const cards = doc.handles.map(card);
    if (!cards.length) cards.push(el("p", {class: "empty"}, "Nothing has run yet: every handle engine.run returns shows here."));
    root.replaceChildren(...cards);
    for (const node of root.querySelectorAll("[data-keep]")) {
      const owner = node.closest("[data-handle-id]");
      const top = scrolls.get((owner ? owner.dataset.handleId : "") + "/" + node.dataset.keep);
      if (top) node.scrollTop = top;
    }
    updates += 1;
    document.body.setAttribute("data-updates", String(updates));
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  let busy = false;
  async function tick() {
    if (busy) return;
    busy = true;
    try {
      const response = await fetch(api, {cache: "no-store", credentials: "omit"});
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      conn.textContent = "live"; conn.className = "conn ok";
    } catch (error) {
      conn.textContent = "disconnected: " + error.message; conn.className = "conn bad";
    } finally {
      busy = false;
    }
  }
  tick();
  setInterval(tick, 1000);
})();
"""

HTML = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>engine status</title><link rel="icon" href="data:,">
<style>{STYLE}</style></head>
<body><header><h1>engine status</h1><span id="conn" class="conn">connecting…</span><span id="updated"></span>
<a id="json">JSON</a></header>
<main id="handles"><p class="empty">Loading…</p></main>
<script>{SCRIPT}</script></body></html>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


CONTENT_SECURITY_POLICY = (f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
                           "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")
