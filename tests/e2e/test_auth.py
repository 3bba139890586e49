"""An exposed stack: the Prefect API wants its auth string, and every Arrivals client sends it.

One stack with `services.expose: true` and PREFECT_SERVER_API_AUTH_STRING set, driven only
through the CLI: `status`, `status --check`, `drop --batch`, `retrain`, `events` and the live
feed of `arrivals up`, whose Ctrl-C stops the stack, after which `status --check` fails.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import IO

import httpx
import pytest

from arrivals.harness import BIN, RunningStack, WaitTimedOut, wait_for
from shared.events import prefect_headers
from tests.support.stack import stack_for

pytestmark = pytest.mark.e2e

SECRET = "operator:e2e-auth-secret"
PARAMS_OVERRIDES = {
    # Loopback still (nothing leaves this machine), but configured as an exposed stack is;
    # MLflow then checks Host headers against allowed_hosts, which names no local address.
    # A generous start timeout: a 2-core machine shared with other test runs is slow to import.
    "services": {
        "expose": True,
        "allowed_hosts": ["arrivals.example:*"],
        "startup_timeout_seconds": 300,
    },
    # The producer's clock stays out: the only batch is the one this test asks for.
    "automation": {"cron_schedule": "0 0 1 1 *"},
}
BATCH_FILE = "tips_batch_001.csv"


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory) -> Iterator[RunningStack]:
    """A running stack whose Prefect API has an auth string (overrides the conftest's)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_SERVER_API_AUTH_STRING", SECRET)
        patch.delenv("PREFECT_API_AUTH_STRING", raising=False)  # the server's secret alone
        with stack_for(request.module, tmp_path_factory) as running:
            yield running


class Foreground:
    """`arrivals up` in the foreground: its feed (stdout) and logs (stderr), read as they come."""

    def __init__(self, stack: RunningStack) -> None:
        self.process = subprocess.Popen(
            [str(BIN / "arrivals"), "up"],
            env=stack.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # the SIGINT below reaches this process alone
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.process.stdout, self.out), (self.process.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    def transcript(self) -> str:
        return "\n".join(["--- stdout", *self.out[-30:], "--- stderr", *self.err[-30:]])

    def wait_for_line(self, text: str, lines: list[str], timeout: float) -> str:
        try:
            return wait_for(
                lambda: next((line for line in list(lines) if text in line), None),
                timeout,
                f"{text!r} from `arrivals up`",
            )
        except WaitTimedOut as error:
            raise WaitTimedOut(f"{error}\n{self.transcript()}") from None

    def interrupt(self, timeout: float = 180) -> int:
        """Ctrl-C, as a person would: the feed stops the stack, then exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        finally:
            for reader in self._readers:
                reader.join(timeout=10)


REFUSALS = ("Unauthorized", "HTTP 401", "refused the credentials")  # httpx's, and the feed's


def no_refusal(text: str) -> bool:
    return not any(refusal in text for refusal in REFUSALS)


def test_the_api_refuses_requests_without_the_auth_string(stack: RunningStack) -> None:
    url = f"{stack.settings.prefect_api_url}/events/filter"
    body = {"filter": {"event": {"name": ["inbox.file.arrived"]}}, "limit": 1}
    assert httpx.post(url, json=body, timeout=10).status_code == 401
    authed = httpx.post(url, json=body, headers=prefect_headers(), timeout=10)
    assert authed.status_code == 200, authed.text


def test_status_and_check_see_a_healthy_stack(stack: RunningStack) -> None:
    check = stack.arrivals("status", "--check", check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("OK: ") and len(check.stdout.splitlines()) == 1
    status = stack.status()
    unhealthy = [name for name, s in status["services"].items() if not s["healthy"]]
    assert unhealthy == [], status["services"]  # the worker's health is an authed API call


def test_drop_retrain_events_and_the_live_feed_then_check_fails_once_down(
    stack: RunningStack,
) -> None:
    feed = Foreground(stack)
    try:
        feed.wait_for_line("Live feed of arrivals", feed.err, timeout=240)

        dropped = stack.arrivals("drop", "--batch", "1", check=False)
        assert dropped.returncode == 0, dropped.stderr
        assert "for batch 1: Completed" in dropped.stderr
        record = stack.wait_terminal(BATCH_FILE, timeout=180)
        assert (record.state, record.model_version) == ("trained", "1")
        feed.wait_for_line(f"arrived    {BATCH_FILE}", feed.out, timeout=60)
        feed.wait_for_line("registered arrivals-tips v1", feed.out, timeout=60)

        retrained = stack.arrivals("retrain", check=False)
        assert retrained.returncode == 0, retrained.stderr
        assert "Completed" in retrained.stderr
        feed.wait_for_line("registered arrivals-tips v2", feed.out, timeout=60)

        events = stack.arrivals("events", "-n", "50", check=False)
        assert events.returncode == 0, events.stderr
        assert f"arrived    {BATCH_FILE}" in events.stdout
        assert "registered arrivals-tips v1" in events.stdout
        assert "registered arrivals-tips v2" in events.stdout
        for result in (dropped, retrained, events):
            assert no_refusal(result.stdout + result.stderr)
    finally:
        returncode = feed.interrupt()
    assert returncode == 0, feed.transcript()
    assert no_refusal(feed.transcript()), feed.transcript()

    check = stack.arrivals("status", "--check", check=False)
    assert check.returncode == 1, check.stdout + check.stderr
    assert check.stdout.startswith("FAIL: down: prefect, mlflow")
