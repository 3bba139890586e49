"""The event feed (`arrivals events`, `up`'s live feed) sends an exposed stack's auth string."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from arrivals.cli import main
from arrivals.events_feed import EventFeed, FeedUnauthorized, event_names

SECRET = "admin:s3cret"


class AuthedEventsApi(ThreadingHTTPServer):
    """A real HTTP server answering `POST /api/events/filter` only with the right Basic auth."""

    def __init__(self, secret: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.expected = "Basic " + base64.b64encode(secret.encode()).decode()
        self.seen: list[str | None] = []  # each request's Authorization header

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api"


class _Handler(BaseHTTPRequestHandler):
    server: AuthedEventsApi

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        auth = self.headers.get("Authorization")
        self.server.seen.append(auth)
        ok = auth == self.server.expected
        body = json.dumps({"events": [], "next_page": None} if ok else {"detail": "Unauthorized"})
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[AuthedEventsApi]:
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_API_AUTH_STRING", raising=False)
    server = AuthedEventsApi(SECRET)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize("variable", ["PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING"])
def test_the_feed_sends_the_auth_string(api, monkeypatch, variable: str) -> None:
    monkeypatch.setenv(variable, SECRET)
    feed = EventFeed(api.api_url, event_names())
    try:
        assert feed.recent(5) == []
        assert feed.poll() == []
    finally:
        feed.close()
    assert api.seen == [api.expected, api.expected]


def test_a_refused_feed_says_so_and_how_to_fix_it(api, monkeypatch) -> None:
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "admin:wrong")
    feed = EventFeed(api.api_url, event_names())
    try:
        with pytest.raises(FeedUnauthorized, match="refused the credentials \\(HTTP 401\\)"):
            feed.recent(5)
    finally:
        feed.close()


def test_cli_events_against_an_authed_api(api, monkeypatch, capsys, caplog) -> None:
    monkeypatch.setenv("ARRIVALS_PREFECT_PORT", str(api.server_address[1]))
    assert main(["events", "-n", "5"]) == 1, "no auth string: refused"
    assert "refused the credentials" in caplog.text
    assert "is the stack up" not in caplog.text, "the stack is up; the secret is what is wrong"
    assert api.seen == [None]
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", SECRET)
    assert main(["events", "-n", "5"]) == 0
    assert api.seen[-1] == api.expected
    assert capsys.readouterr().out == ""
