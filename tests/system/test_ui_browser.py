"""The status page in a real browser, as a user runs it.

A fresh Python process connects with ``engine.connect(ui=True)`` and runs a word count
(40 input files, one split each, 4 reducers), a pipeline and a failing inline pipeline.
Headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium) loads
the printed URL and the test reads the DOM.  Nothing here waits on time: the word count's
map function waits for gate files the test creates, so the page is seen with every map
held, then with exactly the first 20 maps completed (maps 20+ and the pipeline's "held"
stage wait for the second gate), then finished.  The DOM is polled with generous
deadlines; timeouts only bound a hang.

``python -m tests.system.test_ui_browser PATH.png`` runs the same scenario and saves the
mid-job screenshot (the README's bench/results/status_page.png).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FILES, HELD_FROM, REDUCERS, PIPE_ROWS, PIPE_BOUND = 40, 20, 4, 400, 4
EVIL = '<img src=x onerror="document.title=\'pwned\'">'
DEADLINE_S = 300.0

CHILD = r'''
import json, os, sys, time
import pyarrow as pa
import pyarrow.compute as pc
import engine
from engine.kernels.text import count_words
from jobs.wordcount_job import SUM_COUNTS

work, files, held_from, reducers, rows, bound, evil = sys.argv[1], *map(int, sys.argv[2:7]), sys.argv[7]
GATES = (os.path.join(work, "gate-1"), os.path.join(work, "gate-2"))

def wait_for(path):
    deadline = time.monotonic() + 900  # only bounds a test that died without opening its gates
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)

def gated_count_words(batch):
    """The word count's map, held until the gate of its file opens (file i's lines start "f<i>")."""
    index = int(batch.column("line")[0].as_py().split()[0][1:])
    wait_for(GATES[0] if index < held_from else GATES[1])
    return count_words(batch.column("line"))

def square(table):
    return table.append_column("square", pc.multiply(table["n"], table["n"]))

def held(table):
    wait_for(GATES[1])
    return table

def refuse(table):
    raise ValueError(evil + " the sink refused")

engine.connect(ui=True, num_cpus=2)
inputs = [os.path.join(work, "corpus", f"part-{i:03d}.txt") for i in range(files)]
job = engine.MapReduceJob(name="wordcount-ui", source=engine.TextSource(inputs, split_size=1 << 20),
                          map=gated_count_words, combine=SUM_COUNTS, reduce=SUM_COUNTS, keys=["word"],
                          reducers=reducers, output=os.path.join(work, "out"))
numbers = pa.table({"n": pa.array(range(rows), pa.int64())})
pipeline = engine.Pipeline(engine.TableSource(numbers, batch_rows=10),
                           [engine.Stage("square", square, pipe_capacity=bound),
                            engine.Stage("held", held, pipe_capacity=bound)], engine.CollectSink(),
                           engine.PipelineOptions(chaining=False))  # two pipes: "held" backs up "square"
failing = engine.Pipeline(engine.TableSource(numbers.slice(0, 10)), [engine.Stage("pass", square)],
                          engine.CallbackSink(refuse))
flowing = engine.run(pipeline)
counting = engine.run(job)
refused = engine.run(failing, "inline")
summary = {"counters": dict(counting.result().counters), "rows": flowing.result().rows_delivered}
try:
    refused.result()
except Exception as error:
    summary["refused"] = type(error).__name__
print("done " + json.dumps(summary), flush=True)
sys.stdin.readline()
engine.shutdown()
'''

SNAPSHOT_JS = r"""
return Array.from(document.querySelectorAll("section.card")).map((card) => {
  const rows = (id) => Array.from(card.querySelectorAll('[data-section="' + id + '"] tbody tr'))
    .map((tr) => Array.from(tr.cells).map((td) => td.textContent));
  const badge = card.querySelector('[data-field="state"]'), error = card.querySelector('[data-field="error"]');
  return {kind: card.dataset.kind, name: card.querySelector("h2").textContent,
          state: badge ? badge.textContent : null, error: error ? error.textContent : null,
          tasks: rows("tasks"), stages: rows("stages"), counters: rows("counters"),
          images: card.querySelectorAll("img").length,
          lines: card.querySelectorAll("svg.chart polyline").length};
});
"""


def write_corpus(directory: Path) -> collections.Counter:
    """Write the input files and return the word counts a word count must find (plain Python)."""
    rng = random.Random(11)
    vocabulary = ["the", "map", "reduce", "page", "token", "loopback"] + [f"w{i}" for i in range(400)]
    counts: collections.Counter = collections.Counter()
    directory.mkdir(parents=True)
    for index in range(FILES):
        lines = [f"f{index:03d} " + " ".join(rng.choice(vocabulary) for _ in range(8)) for _ in range(1500)]
        (directory / f"part-{index:03d}.txt").write_text("".join(line + "\n" for line in lines))
        for line in lines:
            counts.update(line.split())
    return counts


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = DEADLINE_S) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; last seen: {str(last)[:1500]}")


class Driver:
    """The user's process: ``engine.connect(ui=True)`` and three runs (see CHILD)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(work), str(FILES), str(HELD_FROM), str(REDUCERS), str(PIPE_ROWS),
             str(PIPE_BOUND), EVIL],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err)):
            threading.Thread(target=lambda s=stream, l=lines: [l.append(x) for x in s], daemon=True).start()

    def url(self) -> str:
        def found() -> str | None:
            assert self.process.poll() is None, "the user's process died:\n" + "".join(self.err[-40:])
            matches = [re.search(r"status page at (http://127\.0\.0\.1:\d+/\?token=[\w-]+)", line) for line in self.err]
            hits = [m.group(1) for m in matches if m]
            assert len(hits) <= 1, f"the URL was printed {len(hits)} times"
            return hits[0] if hits else None

        return wait_until(found, "the status page URL on standard error")

    def open_gate(self, number: int) -> None:
        (self.work / f"gate-{number}").touch()

    def summary(self) -> dict:
        line = wait_until(lambda: next((x for x in self.out if x.startswith("done ")), None), "the runs to end")
        return json.loads(line[len("done "):])

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # let a held run end, then let the process exit
            self.open_gate(1)
            self.open_gate(2)
            self.process.stdin.write("\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the child's own session: it and its Ray processes
            self.process.wait(timeout=30)


def make_browser(profile: Path) -> Any:
    """Headless Chromium through the system chromedriver (nothing is downloaded)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    assert not missing, f"{missing} missing: apt-get install chromium chromium-driver (.ci/run does)"
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1400,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    browser.set_page_load_timeout(120)
    browser.set_script_timeout(60)
    return browser


class Scenario:
    """The user's process and a browser on its status page, step by step."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.words = write_corpus(work / "corpus")
        self.driver = Driver(work)
        self.browser = None

    def open_page(self) -> str:
        url = self.driver.url()
        self.browser = make_browser(Path(tempfile.mkdtemp(prefix="chromium-", dir=self.work)))
        self.browser.get(url)
        return url

    def cards(self) -> list[dict]:
        return self.browser.execute_script(SNAPSHOT_JS)

    def card(self, kind: str, name_part: str) -> dict | None:
        return next((c for c in self.cards() if c["kind"] == kind and name_part in c["name"]), None)

    def wait_card(self, kind: str, name_part: str, what: str, condition: Callable[[dict], bool]) -> dict:
        def check() -> dict | None:
            assert self.driver.process.poll() is None or self.driver.out, "the user's process died:\n" + "".join(
                self.driver.err[-40:])
            card = self.card(kind, name_part)
            return card if card is not None and condition(card) else None

        return wait_until(check, what)

    def close(self) -> None:
        if self.browser is not None:
            with contextlib.suppress(Exception):
                self.browser.quit()
        self.driver.stop()


def task_ids() -> list[str]:
    return [f"map-{i:05d}" for i in range(FILES)] + [f"reduce-{r:05d}" for r in range(REDUCERS)]


def states(card: dict) -> dict[str, str]:
    return {row[0]: row[2] for row in card["tasks"]}


def stage(card: dict, stage_id: str) -> dict[str, str] | None:
    columns = ["stage", "replicas", "rows in", "rows out", "batches in", "batches out", "pipe depth", "bound"]
    row = next((r for r in card["stages"] if r[0] == stage_id), None)
    return dict(zip(columns, row)) if row else None


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = Scenario(tmp_path_factory.mktemp("ui"))
    try:
        yield running
    finally:
        running.close()


@pytest.mark.timeout(600)
def test_the_page_is_on_loopback_only_and_refuses_requests_without_the_token(scenario: Scenario) -> None:
    from tests.unit.test_ui_server import listening_addresses

    url = scenario.driver.url()
    port, token = re.search(r":(\d+)/\?token=([\w-]+)", url).groups()
    assert listening_addresses(int(port)) == ["127.0.0.1"]
    base = f"http://127.0.0.1:{port}"
    for path in ("/", "/api/status", "/?token=" + token[:-1], "/api/status?token=" + token + "0"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path, timeout=30)
        assert refused.value.code == 403, path
    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=30) as answer:
        assert answer.status == 200 and "handles" in json.loads(answer.read())


@pytest.mark.timeout(1200)
def test_the_browser_shows_the_running_job_until_its_tasks_complete(scenario: Scenario, tmp_path: Path) -> None:
    scenario.open_page()
    assert scenario.browser.title == "engine status"
    # 1. every map is held: the job runs, its full task table is there, nothing completed
    held = scenario.wait_card("mapreduce", "wordcount-ui", "the running job's task table", lambda c: (
        c["state"] == "running" and len(c["tasks"]) == FILES + REDUCERS and "in_progress" in states(c).values()))
    assert [row[0] for row in held["tasks"]] == task_ids()
    assert "completed" not in states(held).values()
    # 2. the first gate: exactly the first HELD_FROM maps complete, the rest wait; the pipeline's pipes fill
    scenario.driver.open_gate(1)
    half = scenario.wait_card("mapreduce", "wordcount-ui", f"{HELD_FROM} completed maps", lambda c: (
        c["state"] == "running" and sum(s == "completed" for s in states(c).values()) == HELD_FROM))
    assert {t for t, s in states(half).items() if s == "completed"} == set(task_ids()[:HELD_FROM])
    assert states(half)[f"map-{HELD_FROM:05d}"] == "in_progress"
    flowing = scenario.wait_card("pipeline", "square", "the held stage's pipe at its bound", lambda c: (
        c["state"] == "running" and stage(c, "held") is not None and stage(c, "held")["pipe depth"] == str(PIPE_BOUND)))
    for row in flowing["stages"]:
        if row[7] != "–":
            assert int(row[6].replace(",", "")) <= int(row[7]), row  # no pipe beyond its bound
    assert half["lines"] >= 1 and flowing["lines"] >= 1  # charts drawn
    shot = tmp_path / "status_page.png"
    scenario.browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    severe = [entry for entry in scenario.browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], severe  # no script error, no Content-Security-Policy violation
    # 3. the second gate: everything completes; the page's numbers match a plain-Python oracle
    scenario.driver.open_gate(2)
    done = scenario.wait_card("mapreduce", "wordcount-ui", "every task completed", lambda c: (
        c["state"] == "succeeded" and len(c["tasks"]) == FILES + REDUCERS
        and set(states(c).values()) == {"completed"} and c["counters"]))
    counters = {name: int(value.replace(",", "")) for name, value in done["counters"]}
    assert counters["map_input_records"] == FILES * 1500
    assert counters["reduce_output_records"] == len(scenario.words)
    finished = scenario.wait_card("pipeline", "square", "the pipeline to finish", lambda c: c["state"] == "succeeded")
    assert stage(finished, "sink")["rows in"] == f"{PIPE_ROWS:,}"
    refused = scenario.wait_card("pipeline", "pass", "the failing pipeline", lambda c: c["state"] == "failed")
    assert EVIL in refused["error"] and refused["images"] == 0  # shown as text, never as markup
    assert scenario.browser.title == "engine status"
    summary = scenario.driver.summary()
    assert summary["counters"]["reduce_output_records"] == len(scenario.words) and summary["rows"] == PIPE_ROWS


def save_screenshot(path: Path) -> None:
    """Run the scenario to its mid-job state and save the page there (for the README)."""
    with tempfile.TemporaryDirectory(prefix="ui-shot-") as work:
        scenario = Scenario(Path(work))
        try:
            scenario.open_page()
            scenario.driver.open_gate(1)
            scenario.wait_card("mapreduce", "wordcount-ui", "the mid-job state", lambda c: (
                sum(s == "completed" for s in states(c).values()) == HELD_FROM))
            scenario.wait_card("pipeline", "square", "the pipeline's charts", lambda c: c["lines"] >= 2)
            time.sleep(3)  # a few more samples, so the charts show some history (a picture, not a check)
            path.parent.mkdir(parents=True, exist_ok=True)
            scenario.browser.save_screenshot(str(path))
        finally:
            scenario.close()


if __name__ == "__main__":
    save_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/status_page.png"))
