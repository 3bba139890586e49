"""Alerts (shared.alerts): alerts.urls checked at load, the messages people read, and
delivery through Apprise that logs a failure instead of raising it."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.alerts import (
    Alert,
    AppriseNotifier,
    BackgroundNotifier,
    NoNotifier,
    notifier_for,
    rejected_alert,
    stuck_alert,
    suspect_alert,
)
from shared.settings import Settings, SettingsError, load_settings
from tests.support.fakes import FakeNotifier


def _with_alerts(**alerts) -> Callable[[dict], None]:
    return lambda params: params.update(alerts=alerts)


def _one_line_error(config: Path) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    message = str(info.value)
    assert "\n" not in message.strip(), f"error is not one line: {message!r}"
    return message


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- settings -------------------------------------------------------------------------------


def test_no_urls_by_default_means_no_alerts(settings: Settings) -> None:
    assert settings.alerts.urls == []
    assert settings.alerts.stuck_after_seconds > 0
    assert isinstance(notifier_for(settings.alerts), NoNotifier)


def test_apprise_urls_load(write_config: Callable[..., Path]) -> None:
    urls = ["json://127.0.0.1:9/hook", "mailtos://user:secret@example.com"]
    settings = load_settings(write_config(_with_alerts(urls=urls, stuck_after_seconds=60)))
    assert settings.alerts.urls == urls
    assert settings.alerts.stuck_after_seconds == 60
    assert isinstance(notifier_for(settings.alerts), AppriseNotifier)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("nope://host/path", "unknown Apprise scheme 'nope'://"),
        ("json://", "json:// URL that Apprise cannot parse"),
        ("hooks.example.com/hook", "not an Apprise URL (scheme://...)"),
    ],
)
def test_a_url_apprise_cannot_use_stops_loading_naming_the_key(
    write_config: Callable[..., Path], url: str, says: str
) -> None:
    config = write_config(_with_alerts(urls=["json://127.0.0.1:9/ok", url]))
    message = _one_line_error(config)
    assert "alerts.urls.1:" in message, message
    assert says in message, message


@pytest.mark.parametrize("url", ["tgram://S3CRET-TOKEN", "nope://u:S3CRET@host", "S3CRET@host"])
def test_neither_the_error_nor_the_log_shows_the_secret_part_of_a_url(
    write_config: Callable[..., Path], caplog: pytest.LogCaptureFixture, url: str
) -> None:
    config = write_config(_with_alerts(urls=[url]))
    with caplog.at_level(logging.DEBUG):
        message = _one_line_error(config)
    assert "alerts.urls.0:" in message
    assert "S3CRET" not in message
    assert "S3CRET" not in caplog.text  # Apprise itself would log the whole URL
    assert not logging.getLogger("apprise").disabled  # silenced only while checking


def test_the_stuck_threshold_must_be_positive(write_config: Callable[..., Path]) -> None:
    message = _one_line_error(write_config(_with_alerts(stuck_after_seconds=0)))
    assert "alerts.stuck_after_seconds" in message


def test_an_unknown_alerts_key_is_refused(write_config: Callable[..., Path]) -> None:
    message = _one_line_error(write_config(_with_alerts(url="json://127.0.0.1:9/x")))
    assert "alerts.url: unknown key" in message


# -- delivery -------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP server that keeps every JSON body POSTed to it; its json:// URL."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            received.append({"path": self.path, **json.loads(self.rfile.read(length))})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:  # quiet: pytest shows the assertions
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_apprise_delivers_title_body_and_level(receiver: tuple[str, list[dict]]) -> None:
    url, received = receiver
    sent = AppriseNotifier([url]).send(Alert("Arrivals: x.csv rejected", "Reason: bad", "failure"))
    assert sent is True
    (body,) = received
    assert body["path"] == "/hook"
    assert (body["title"], body["message"], body["type"]) == (
        "Arrivals: x.csv rejected",
        "Reason: bad",
        "failure",
    )


def test_an_unreachable_receiver_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    notifier = AppriseNotifier([f"json://127.0.0.1:{_closed_port()}/hook"])
    with caplog.at_level(logging.WARNING, logger="arrivals.alerts"):
        assert notifier.send(Alert("Arrivals: t", "b")) is False
    assert "Alert 'Arrivals: t' not delivered" in caplog.text


def test_a_url_that_fails_does_not_stop_the_others(receiver: tuple[str, list[dict]]) -> None:
    url, received = receiver
    notifier = AppriseNotifier([f"json://127.0.0.1:{_closed_port()}/down", url])
    assert notifier.send(Alert("Arrivals: t", "b")) is False  # not every URL got it...
    assert [r["title"] for r in received] == ["Arrivals: t"]  # ...but the working one did


def test_a_plugin_that_raises_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = AppriseNotifier(["json://127.0.0.1:9/hook"])

    def explode(**_kwargs):
        raise RuntimeError("plugin bug")

    monkeypatch.setattr(notifier._apprise, "notify", explode)
    with caplog.at_level(logging.ERROR, logger="arrivals.alerts"):
        assert notifier.send(Alert("Arrivals: t", "b")) is False
    assert "Alert 'Arrivals: t' not sent" in caplog.text
    assert "plugin bug" in caplog.text


def test_background_sends_in_order_and_close_drains_the_queue() -> None:
    inner = FakeNotifier()
    background = BackgroundNotifier(inner)
    alerts = [Alert(f"t{i}", "b") for i in range(5)]
    for alert in alerts:
        assert background.send(alert) is True
    background.close()
    assert inner.sent == alerts


def test_background_send_never_waits_for_a_slow_receiver() -> None:
    release = threading.Event()

    class Slow(FakeNotifier):
        def send(self, alert: Alert) -> bool:
            release.wait(10)
            return super().send(alert)

    inner = Slow()
    background = BackgroundNotifier(inner)
    started = time.monotonic()
    background.send(Alert("a", "b"))
    background.send(Alert("c", "d"))
    assert time.monotonic() - started < 0.5
    assert inner.sent == []  # still held by the receiver
    release.set()
    background.close()
    assert [a.title for a in inner.sent] == ["a", "c"]


# -- messages -------------------------------------------------------------------------------


def test_a_rejection_says_why_where_and_how_to_let_it_in() -> None:
    alert = rejected_alert(
        "tips_9.csv",
        "missing columns: tip",
        "/home/q/tips_9.csv",
        "fix the file in place, then: arrivals release tips_9.csv",
        "http://ui/runs/flow-run/1",
    )
    assert alert.title == "Arrivals: tips_9.csv rejected"
    for part in (
        "Reason: missing columns: tip",
        "Now at: /home/q/tips_9.csv",
        "arrivals release tips_9.csv",
        "Run: http://ui/runs/flow-run/1",
    ):
        assert part in alert.body
    assert "Run:" not in rejected_alert("a.txt", "not a CSV", "/q/a.txt", "rename it").body


def test_a_suspect_gives_the_evidence_and_both_commands() -> None:
    alert = suspect_alert("tips_3.csv", "with tips_3.csv roc_auc 0.61, without it 0.80", "u")
    assert alert.title == "Arrivals: tips_3.csv is suspect"
    assert "Evidence: with tips_3.csv roc_auc 0.61, without it 0.80" in alert.body
    assert "arrivals accept tips_3.csv" in alert.body
    assert "arrivals retract tips_3.csv" in alert.body


@pytest.mark.parametrize(
    ("state", "hint"),
    [("detected", "Prefect server"), ("announced", "worker"), ("claimed", "a retrain holds it")],
)
def test_a_stuck_file_says_how_long_and_where_to_look(state: str, hint: str) -> None:
    alert = stuck_alert("late.csv", state, detected_at=1_700_000_000, now=1_700_000_000 + 1500)
    assert alert.title == "Arrivals: late.csv stuck for 25 min"
    assert alert.level == "failure"
    assert f"still {state}" in alert.body
    assert "2023-11-14T22:13:20+00:00" in alert.body
    assert hint in alert.body
