"""The UIs, in a real browser: the Prefect Event Feed shows a hand-dropped file's arrival.

Headless Chromium (Debian package `chromium`, installed by `.ci/run`) loads the pages; the
screenshots it takes of the Prefect event feed and the MLflow model page are the ones the
README shows (docs/images/). Every browser process is started with a timeout and stopped.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shared.events import FILE_ARRIVED
from tests.e2e.conftest import RunningStack

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
# Prefect 3.9 serves its default UI (V2) under /v2; `/` redirects there.
PROJECT_EVENTS = ["inbox.file.*", "model.*"]


def event_feed_url(stack: RunningStack, events: list[str]) -> str:
    """The Prefect UI Event Feed, filtered to `events` (names or `prefix.*`), newest first."""
    query = urllib.parse.urlencode({"events": json.dumps(events), "order": "DESC"})
    return f"{stack.settings.prefect_ui_url}/v2/events?{query}"


def chromium(profile: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run headless Chromium once with a fresh profile; it exits by itself (or is killed)."""
    assert CHROMIUM is not None
    profile.mkdir()
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )


def dump_dom(tmp_path: Path, url: str) -> str:
    """The page's DOM after its scripts ran (15 s of virtual time for the API calls)."""
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    return chromium(profile, "--virtual-time-budget=15000", "--dump-dom", url).stdout


def screenshot(tmp_path: Path, url: str, target: Path) -> Path:
    """A WINDOW-sized PNG of the page, saved small enough to commit."""
    raw = tmp_path / f"{target.stem}-raw.png"
    chromium(
        tmp_path / f"profile-{time.monotonic_ns()}",
        "--virtual-time-budget=15000",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={raw}",
        url,
    )
    return _save_small(raw, target)


def _save_small(raw: Path, target: Path) -> Path:
    from PIL import Image  # matplotlib's dependency: in the environment already

    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(raw) as image:
        assert image.size == WINDOW
        image.convert("RGB").quantize(colors=256).save(target, optimize=True)
    return target


class DevTools:
    """Just enough of the Chrome DevTools protocol to click in a page and screenshot it."""

    def __init__(self, page_ws: str) -> None:
        from websockets.sync.client import connect

        self._ws = connect(page_ws, max_size=64 * 1024 * 1024)
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

    def close(self) -> None:
        self._ws.close()


@contextlib.contextmanager
def browser(tmp_path: Path) -> Iterator[DevTools]:
    """A headless Chromium driven over DevTools, stopped (and reaped) afterwards."""
    assert CHROMIUM is not None
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    profile.mkdir()
    process = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    devtools = None
    try:
        # Chromium writes the port it picked into the profile once DevTools listens.
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.exists() and active.read_text().strip()):
            assert process.poll() is None, "chromium exited before DevTools listened"
            assert time.monotonic() < deadline, "chromium did not start DevTools"
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(p for p in pages if p["type"] == "page")
        devtools = DevTools(page["webSocketDebuggerUrl"])
        devtools.call(
            "Emulation.setDeviceMetricsOverride",
            width=WINDOW[0],
            height=WINDOW[1],
            deviceScaleFactor=1,
            mobile=False,
        )
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_page(devtools: DevTools, expression: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not devtools.evaluate(expression):
        assert time.monotonic() < deadline, f"page never satisfied {expression}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def trained_file(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory):
    """A CSV a person copied in with `cp`, once it is trained and champion."""
    assert CHROMIUM is not None, "chromium is not installed (apt-get install -y chromium)"
    folder = tmp_path_factory.mktemp("drop")
    source = folder / "ui_hand_drop.csv"
    rows = (PROJECT / "data" / "source" / "tips.csv").read_text().splitlines()
    source.write_text("\n".join(rows[:120]) + "\n")
    subprocess.run(["cp", str(source), str(stack.settings.dirs.inbox)], check=True, timeout=30)
    record = stack.wait_terminal("ui_hand_drop.csv")
    assert record.state == "trained", record.reason
    return record


def test_the_sensor_silent_automation_is_applied(stack: RunningStack):
    automations = stack.prefect("POST", "/automations/filter", json={}).json()
    silent = [a for a in automations if a["name"] == "sensor-silent"]
    assert len(silent) == 1
    trigger = silent[0]["trigger"]
    assert trigger["posture"] == "Proactive"
    assert trigger["expect"] == ["inbox.sensor.heartbeat"]
    assert trigger["within"] == 3 * stack.settings.sensor.heartbeat_seconds
    assert silent[0]["enabled"] is True


def test_event_feed_page_shows_the_hand_dropped_arrival(
    stack: RunningStack, trained_file, tmp_path: Path
):
    # The event is in the API first; the page is what a person sees of it.
    assert stack.events(FILE_ARRIVED, f"inbox.file.{trained_file.sha256}")
    dom = dump_dom(tmp_path, event_feed_url(stack, [FILE_ARRIVED]))
    assert "Event Feed" in dom
    assert FILE_ARRIVED in dom
    # Shown by its name (prefect.resource.name), not only by its sha256 resource id.
    assert "ui_hand_drop.csv" in dom


def test_screenshot_of_the_prefect_event_feed(stack: RunningStack, trained_file, tmp_path: Path):
    target = screenshot(
        tmp_path, event_feed_url(stack, PROJECT_EVENTS), IMAGES / "prefect-event-feed.png"
    )
    assert target.stat().st_size > 20_000  # a rendered page, not a blank one


def test_screenshot_of_the_mlflow_model_page(stack: RunningStack, trained_file, tmp_path: Path):
    name = stack.settings.model.name
    url = f"{stack.settings.mlflow_url}/#/models/{urllib.parse.quote(name)}"
    target = IMAGES / "mlflow-model.png"
    with browser(tmp_path) as page:
        page.call("Page.enable")
        page.call("Page.navigate", url=url)
        wait_page(page, "!!document.body && document.body.innerText.includes('champion')")
        assert name in page.evaluate("document.body.innerText")
        # MLflow opens its assistant panel on a first visit; close it as a person would.
        page.evaluate(
            "document.querySelector("
            "'[data-component-id=\"mlflow.assistant.chat_panel.close\"]')?.click()"
        )
        time.sleep(1.0)
        shot = page.call("Page.captureScreenshot", format="png")
    raw = tmp_path / "mlflow-raw.png"
    raw.write_bytes(base64.b64decode(shot["data"]))
    _save_small(raw, target)
    assert target.stat().st_size > 20_000
