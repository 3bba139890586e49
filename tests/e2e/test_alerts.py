"""Alerts reach people: a real stack whose alerts.urls point at a webhook receiver this test
runs on 127.0.0.1 (Apprise's json://), and the notifications a person would get."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from arrivals.harness import RunningStack, wait_for
from shared.ledger import FileState
from tests.support.stack import stack_for

pytestmark = pytest.mark.e2e
log = logging.getLogger(__name__)

NO_TIP = "total_bill,sex,smoker,day,time,size\n16.99,Female,No,Sun,Dinner,2\n"
SILENT_TITLE = "Arrivals: the inbox sensor is silent"


@dataclass
class Receiver:
    """A local webhook: every JSON body POSTed to it, with when it came."""

    url: str = ""
    received: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def titled(self, title: str, after: float = 0.0) -> list[dict]:
        with self.lock:
            return [r for r in self.received if r.get("title") == title and r["at"] >= after]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            with receiver.lock:
                receiver.received.append({**body, "path": self.path, "at": time.time()})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:  # the test reports what arrived itself
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"json://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def stack(receiver: Receiver, tmp_path_factory) -> Iterator[RunningStack]:
    """This module's stack: alerts to the receiver; a quick heartbeat, so the sensor-silent
    window is Prefect's 10 s minimum; no producer runs (every file is dropped by hand)."""
    overrides = {
        "automation": {"cron_schedule": "0 0 1 1 *"},
        "sensor": {"rescan_seconds": 2, "heartbeat_seconds": 3},
        "alerts": {"urls": [receiver.url]},
        # Other stacks may share this machine's 2 cores: slow starts are not this test's subject.
        "services": {"startup_timeout_seconds": 400},
    }
    module = SimpleNamespace(PARAMS_OVERRIDES=overrides)
    with stack_for(module, tmp_path_factory) as running:  # type: ignore[arg-type]
        yield running


def test_a_rejected_file_reaches_the_receiver(
    stack: RunningStack, receiver: Receiver, tmp_path: Path
) -> None:
    staged = tmp_path / "no_tip.csv"
    staged.write_text(NO_TIP)
    shutil.move(staged, stack.settings.dirs.inbox / "no_tip.csv")  # a rename: complete at once
    record = stack.wait_terminal("no_tip.csv", timeout=300)
    assert record.state == FileState.REJECTED
    (alert,) = wait_for(
        lambda: receiver.titled("Arrivals: no_tip.csv rejected"), 60, "the rejection alert"
    )
    assert alert["path"] == "/alerts"
    assert f"Reason: {record.reason}" in alert["message"]
    assert "arrivals release no_tip.csv" in alert["message"]
    assert "/runs/flow-run/" in alert["message"]  # the run that rejected it


def test_a_silent_sensor_reaches_the_receiver(stack: RunningStack, receiver: Receiver) -> None:
    """Stop (SIGSTOP) the sensor: no heartbeat for a window, and the Prefect server itself
    sends the alert through the notification block `up` saved from alerts.urls."""
    pid = stack.service_pid("sensor")
    stopped_at = time.time()
    os.killpg(pid, signal.SIGSTOP)
    try:
        alerts = wait_for(
            lambda: receiver.titled(SILENT_TITLE, after=stopped_at), 120, "the sensor-silent alert"
        )
    finally:
        os.killpg(pid, signal.SIGCONT)
    waited = alerts[0]["at"] - stopped_at
    log.info("sensor-silent alert %.1f s after the sensor stopped", waited)
    assert "arrivals up --detach" in alerts[0]["message"]
    assert "sensor-silent" in alerts[0]["message"]  # the automation's name, from the template
