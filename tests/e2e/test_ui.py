"""The UIs, in a real browser: the Prefect Event Feed shows a hand-dropped file's arrival.

Headless Chromium (Debian package `chromium`, installed by `.ci/run`) is driven over the
DevTools protocol: it waits in real time until a page shows what the test expects (with
`--virtual-time-budget` the Prefect UI rendered "No events found" on a fresh server), and
takes the screenshots of the Prefect event feed and the MLflow model page that the README
shows (docs/images/). Every browser process is stopped, and killed if it does not stop.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
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

from shared.events import CHAMPION_PROMOTED, FILE_ARRIVED, VERSION_REGISTERED
from tests.e2e.conftest import RunningStack, wait_for

pytestmark = pytest.mark.e2e
PROJECT = Path(__file__).resolve().parents[2]
IMAGES = PROJECT / "docs" / "images"
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
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

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
    assert stack.events(FILE_ARRIVED, f"inbox.file.{trained_file.sha256}")
    started = time.monotonic()
    with browser(tmp_path) as page:
        # By its name (the event's prefect.resource.name), not only by its sha256 resource id.
        text = page.open(event_feed_url(stack, [FILE_ARRIVED]), showing=[DROPPED])
    sys.stderr.write(f"\nevent feed showed {DROPPED} in {time.monotonic() - started:.1f} s\n")
    assert "Event Feed" in text
    assert "Inbox File Arrived" in text
    assert FILE_ARRIVED in text
    assert "No events found" not in text


def test_screenshot_of_the_prefect_event_feed(stack: RunningStack, trained_file, tmp_path: Path):
    with browser(tmp_path) as page:
        page.open(
            event_feed_url(stack, STORY, order="ASC"),
            showing=[DROPPED, "Model Version Registered", "Model Champion Promoted"],
        )
        time.sleep(1.0)  # the histogram animates in
        target = page.screenshot(IMAGES / "prefect-event-feed.png")
    assert target.stat().st_size > 20_000  # a rendered page, not a blank one


def test_screenshot_of_the_mlflow_model_page(stack: RunningStack, trained_file, tmp_path: Path):
    name = stack.settings.model.name
    url = f"{stack.settings.mlflow_url}/#/models/{urllib.parse.quote(name)}"
    with browser(tmp_path) as page:
        text = page.open(url, showing=[name, f"Version {trained_file.model_version}", "champion"])
        assert DROPPED[:12] in text  # the arrivals.files_new tag names the file
        # MLflow opens its assistant panel on a first visit; close it as a person would.
        page.evaluate(
            "document.querySelector("
            "'[data-component-id=\"mlflow.assistant.chat_panel.close\"]')?.click()"
        )
        time.sleep(1.0)
        target = page.screenshot(IMAGES / "mlflow-model.png")
    assert target.stat().st_size > 20_000
