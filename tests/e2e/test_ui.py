"""The UIs, in a real browser, after a person copied a CSV into the inbox: the Prefect UI
shows its arrival, the retrain deployment and the flow run that trained it; the MLflow UI
shows the registered model, the version trained on it and that version's champion alias.

Headless Chromium (Debian package `chromium`, installed by `.ci/run`) is driven over the
DevTools protocol: it waits in real time until a page shows what the test expects (with
`--virtual-time-budget` the Prefect UI rendered "No events found" on a fresh server), and
takes the screenshots of the Prefect event feed and the MLflow model page that the README
shows. They are written under the test's tmp_path; the tracked copies in docs/images/ are
never touched, unless `ARRIVALS_UPDATE_SCREENSHOTS=1` is set to refresh them:

    ARRIVALS_UPDATE_SCREENSHOTS=1 .venv/bin/pytest -m e2e tests/e2e/test_ui.py

Every browser process is stopped, and killed if it does not stop.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from arrivals.harness import RunningStack, wait_for
from shared.events import CHAMPION_PROMOTED, FILE_ARRIVED, VERSION_REGISTERED
from tests.support.stack import stored_events

pytestmark = pytest.mark.e2e
PROJECT = Path(__file__).resolve().parents[2]
IMAGES = PROJECT / "docs" / "images"  # the README's screenshots, tracked
UPDATE_SCREENSHOTS = os.environ.get("ARRIVALS_UPDATE_SCREENSHOTS") == "1"
# The producer's clock never ticks during this module: only the hand-dropped file arrives.
PARAMS_OVERRIDES = {"automation": {"cron_schedule": "0 0 1 1 *"}}
CHROMIUM = shutil.which("chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--hide-scrollbars",
]
WINDOW = (1400, 900)
DROPPED = "ui_hand_drop.csv"
# The story of one file, oldest first: it arrived, a version trained on it, it became champion.
STORY = [FILE_ARRIVED, VERSION_REGISTERED, CHAMPION_PROMOTED]


def event_feed_url(stack: RunningStack, events: list[str], order: str = "DESC") -> str:
    """The Prefect UI Event Feed, filtered to these event names, for the last half hour.

    Prefect 3.9 serves its default UI (V2) under /v2 (`/` redirects there); the page takes
    its filter from the query string (a JSON list of names, or of `prefix.*` patterns). An
    explicit range that ends in the future: the default "Past day" ends at the last full
    minute, so an event of the current minute shows only after the page's next minute tick.
    """
    now = datetime.now(UTC)
    query = urllib.parse.urlencode(
        {
            "events": json.dumps(events),
            "order": order,
            "rangeType": "range",
            "start": (now - timedelta(minutes=30)).isoformat(),
            "end": (now + timedelta(minutes=5)).isoformat(),
        }
    )
    return f"{stack.settings.prefect_ui_url}/v2/events?{query}"


class Page:
    """One browser tab over the DevTools protocol: just enough to load, read and capture."""

    def __init__(self, websocket_url: str) -> None:
        from websockets.sync.client import connect  # a dependency of prefect

        self._ws = connect(websocket_url, max_size=64 * 1024 * 1024)
        self._ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        call_id = next(self._ids)
        self._ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=30))
            if message.get("id") == call_id:
                assert "error" not in message, message
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def text(self) -> str:
        """The page's visible text, no-break spaces as plain ones (MLflow's `@ champion`)."""
        text = self.evaluate("document.body ? document.body.innerText : ''") or ""
        return text.replace("\N{NO-BREAK SPACE}", " ")

    def open(self, url: str, *, showing: list[str], timeout: float = 45) -> str:
        """Load `url` and wait until the page's text contains every string in `showing`."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(wanted in text for wanted in showing):
                return text
            assert time.monotonic() < deadline, (
                f"{url} never showed {showing} in {timeout:.0f} s; it shows:\n{text[-1500:]}"
            )
            time.sleep(0.5)

    def rows(self) -> list[str]:
        """The text of every table row on the page, whitespace collapsed."""
        return self.evaluate(
            "Array.from(document.querySelectorAll('tr, [role=row]'))"
            ".map(row => row.innerText.replace(/\\s+/g, ' ').trim())"
        )

    def screenshot(self, target: Path) -> Path:
        """A WINDOW-sized PNG of the page, made small enough to commit (256 colours)."""
        from PIL import Image  # matplotlib's dependency: in the environment already

        raw = target.with_name(target.stem + "-raw.png")
        raw.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(raw) as image:
            assert image.size == WINDOW
            image.convert("RGB").quantize(colors=256).save(target, optimize=True)
        raw.unlink()
        with Image.open(target) as image:
            colours = image.getcolors(maxcolors=256) or []
        assert len(colours) > 16, f"{target.name}: {len(colours)} colours, a blank page?"
        return target

    def close(self) -> None:
        self._ws.close()


@contextlib.contextmanager
def browser(tmp_path: Path) -> Iterator[Page]:
    """Headless Chromium with a fresh profile and one WINDOW-sized tab; stopped afterwards."""
    assert CHROMIUM is not None, "chromium is not installed (apt-get install -y chromium)"
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    page = None
    try:
        # Chromium writes the port it picked into the profile once DevTools listens.
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().strip()):
            assert process.poll() is None, "chromium exited before DevTools listened"
            assert time.monotonic() < deadline, "chromium did not start DevTools in 30 s"
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        tabs = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = Page(next(t for t in tabs if t["type"] == "page")["webSocketDebuggerUrl"])
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=WINDOW[0],
            height=WINDOW[1],
            deviceScaleFactor=1,
            mobile=False,
        )
        yield page
    finally:
        if page is not None:
            page.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def trained_file(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory):
    """A CSV a person copied in with `cp`, once its version is registered and promoted."""
    assert CHROMIUM is not None, "chromium is not installed (apt-get install -y chromium)"
    source = tmp_path_factory.mktemp("drop") / DROPPED
    rows = (PROJECT / "data" / "source" / "tips.csv").read_text().splitlines()
    source.write_text("\n".join(rows[:120]) + "\n")
    subprocess.run(["cp", str(source), str(stack.settings.dirs.inbox)], check=True, timeout=30)
    record = stack.wait_terminal(DROPPED)
    assert record.state == "trained", record.reason
    # The retrain announces the version after the ledger says trained: wait for the story's end.
    wait_for(
        lambda: [
            e
            for e in stack.events(CHAMPION_PROMOTED)
            if e["payload"]["new_version"] == record.model_version
        ],
        60,
        "the promotion of the version that took the file",
    )
    return record


def publish(shot: Path) -> None:
    """Refresh the README's copy of a screenshot, only when asked to (see the docstring)."""
    if UPDATE_SCREENSHOTS:
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, IMAGES / shot.name)


def _digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in IMAGES.glob("*.png")}


@pytest.fixture(scope="module", autouse=True)
def tracked_screenshots_unchanged() -> Iterator[None]:
    """The module leaves docs/images/ as it found it, unless it was asked to refresh it."""
    before = _digests()
    yield
    if not UPDATE_SCREENSHOTS:
        assert _digests() == before, "a test rewrote the tracked screenshots in docs/images/"


def test_the_sensor_silent_automation_is_applied(stack: RunningStack):
    automations = stack.prefect("POST", "/automations/filter", json={}).json()
    silent = [a for a in automations if a["name"] == "sensor-silent"]
    assert len(silent) == 1
    trigger = silent[0]["trigger"]
    assert trigger["posture"] == "Proactive"
    assert trigger["expect"] == ["inbox.sensor.heartbeat"]
    assert trigger["match"] == {"prefect.resource.id": "inbox.sensor.*"}
    assert trigger["within"] == 3 * stack.settings.sensor.heartbeat_seconds
    assert silent[0]["enabled"] is True


def test_event_feed_page_shows_the_hand_dropped_arrival(
    stack: RunningStack, trained_file, tmp_path: Path
):
    # The event is in the API first; the page is what a person sees of it.
    assert stored_events(stack, FILE_ARRIVED, f"inbox.file.{trained_file.sha256}")
    started = time.monotonic()
    with browser(tmp_path) as page:
        # By its name (the event's prefect.resource.name), not only by its sha256 resource id.
        text = page.open(event_feed_url(stack, [FILE_ARRIVED]), showing=[DROPPED])
    sys.stderr.write(f"\nevent feed showed {DROPPED} in {time.monotonic() - started:.1f} s\n")
    assert "Event Feed" in text
    assert "Inbox File Arrived" in text
    assert FILE_ARRIVED in text
    assert "No events found" not in text


def test_prefect_ui_shows_the_retrain_deployment_and_its_run(
    stack: RunningStack, trained_file, tmp_path: Path
):
    """The Deployments page lists the retrain deployment under its flow; the page of the run
    that claimed the file names its flow, deployment and final state, and its logs say which
    version it registered and promoted."""
    run = wait_for(
        lambda: _completed(stack, trained_file.claimed_by), 60, "the retrain run to complete"
    )
    version = trained_file.model_version
    model = stack.settings.model.name
    with browser(tmp_path) as page:
        page.open(f"{stack.settings.prefect_ui_url}/v2/deployments", showing=["retrain-on-arrival"])
        rows = [row for row in page.rows() if "retrain-on-arrival" in row]
        assert len(rows) == 1, page.rows()
        assert rows[0].startswith("retrain-on-arrival retrain "), rows[0]
        text = page.open(
            f"{stack.settings.prefect_ui_url}/v2/runs/flow-run/{run['id']}",
            # The deployment's name comes in a request of its own, after the header ("...").
            showing=[
                run["name"],
                "Completed",
                "Deployment\nretrain-on-arrival",
                f"Registered {model} v{version}",
            ],
        )
    # Where the page puts the state and the details panel varies with how fast it renders,
    # so the page as a whole is asserted: this run, ended well, from the retrain deployment.
    assert run["name"] in text and "retrain" in text, text
    assert "Completed" in text and "Failed" not in text and "Crashed" not in text, text
    assert "Deployment\nretrain-on-arrival" in text, text
    assert f"champion is now v{version}" in text


def _completed(stack: RunningStack, run_id: str) -> dict | None:
    run = stack.prefect("GET", f"/flow_runs/{run_id}").json()
    return run if run["state_type"] == "COMPLETED" else None


def test_screenshot_of_the_prefect_event_feed(stack: RunningStack, trained_file, tmp_path: Path):
    """The file's story in order: it arrived, a version trained on it (linked to the run that
    trained it), that version became champion."""
    run = stack.prefect("GET", f"/flow_runs/{trained_file.claimed_by}").json()
    version = f"{stack.settings.model.name} v{trained_file.model_version}"
    story = ["Inbox File Arrived", "Model Version Registered", "Model Champion Promoted"]
    with browser(tmp_path) as page:
        text = page.open(
            event_feed_url(stack, STORY, order="ASC"), showing=[DROPPED, version, *story]
        )
        time.sleep(1.0)  # the histogram animates in
        shot = page.screenshot(tmp_path / "prefect-event-feed.png")
    positions = [text.index(title) for title in story]
    assert positions == sorted(positions), text
    registered = text[positions[1] : positions[2]]
    for shown in (version, run["name"], DROPPED):  # the version, its run, its file
        assert shown in registered, f"{shown!r} not in the registered event: {registered!r}"
    publish(shot)


def test_screenshot_of_the_mlflow_model_page(stack: RunningStack, trained_file, tmp_path: Path):
    """The registered model lists the version trained on the file, with the champion alias
    on that version's row, and the tag naming the file."""
    name = stack.settings.model.name
    version = f"Version {trained_file.model_version}"
    url = f"{stack.settings.mlflow_url}/#/models/{urllib.parse.quote(name)}"
    with browser(tmp_path) as page:
        text = page.open(url, showing=[name, version, "@ champion"])
        rows = [row for row in page.rows() if row.startswith(version + " ")]
        assert len(rows) == 1, page.rows()
        assert "@ champion" in rows[0]
        assert f"arrivals.files_new : {DROPPED}" in rows[0]  # the tag names the file
        assert f"arrivals.flow_run_id : {trained_file.claimed_by}" in rows[0]
        assert "Registered Models" in text
        # MLflow opens its assistant panel on a first visit; close it as a person would.
        page.evaluate(
            "document.querySelector("
            "'[data-component-id=\"mlflow.assistant.chat_panel.close\"]')?.click()"
        )
        time.sleep(1.0)
        shot = page.screenshot(tmp_path / "mlflow-model.png")
    publish(shot)
