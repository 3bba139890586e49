"""Alerts that reach people: the `alerts` settings, the messages, and who sends them.

Sending sits behind `Notifier`; `AppriseNotifier` delivers to the Apprise URLs of
`alerts.urls` (json://, mailto://, slack://, ...). A notification is a side note to the
ledger, which stays the record: a notifier logs a failure and never raises, so a receiver
that is down never fails a retrain or stops the sensor.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal, Protocol

from pydantic import AfterValidator, Field

from shared.runtime_settings import StrictSection

log = logging.getLogger("arrivals.alerts")

Level = Literal["info", "warning", "failure"]  # Apprise's notify types (receivers colour them)
SEND_TIMEOUT_SECONDS = 10.0  # per URL: a receiver that hangs cannot hold a retrain for long


def apprise_url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url` (checked offline, nothing is sent), or None: it can."""
    # Only a config that has alerts pays for the import.
    import apprise
    from apprise.manager_plugins import NotificationManager

    # Apprise logs a URL it cannot parse, secrets and all: the one-line error says enough.
    apprise_log = logging.getLogger("apprise")
    was_disabled, apprise_log.disabled = apprise_log.disabled, True
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    finally:
        apprise_log.disabled = was_disabled
    if plugin is not None:
        return None
    scheme = url.partition("://")[0] if "://" in url else ""
    # The scheme alone is shown: the rest of an Apprise URL often holds a token or password.
    if not scheme:
        return "not an Apprise URL (scheme://...), e.g. json://host:port/path"
    if scheme.lower() not in NotificationManager().schemas():
        return f"unknown Apprise scheme {scheme!r}://"
    return f"{scheme}:// URL that Apprise cannot parse (a part is missing or malformed)"


def _apprise_url(url: str) -> str:
    problem = apprise_url_problem(url)
    if problem:
        raise ValueError(problem)
    return url


class AlertSettings(StrictSection):
    """Who hears about trouble: Apprise URLs, and when a waiting file counts as stuck."""

    urls: list[Annotated[str, AfterValidator(_apprise_url)]] = Field(default_factory=list)
    # A file detected but not decided (trained, rejected or suspect) this long: one alert.
    stuck_after_seconds: Annotated[float, Field(gt=0)] = 900


@dataclass(frozen=True)
class Alert:
    """One notification: a short title, a body a person can act on, how bad it is."""

    title: str
    body: str
    level: Level = "warning"


class Notifier(Protocol):
    def send(self, alert: Alert) -> bool:
        """Deliver `alert`; False (and a log line) when it was not delivered. Never raises."""


class NoNotifier:
    """No alerts configured: nothing is sent."""

    def send(self, alert: Alert) -> bool:
        return False


class AppriseNotifier:
    """Sends to every Apprise URL; a URL that fails is logged, the others still get it."""

    def __init__(self, urls: list[str], *, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        import apprise

        self._apprise = apprise.Apprise()
        for url in urls:
            self._apprise.add(url)
        self._timeout = timeout

    def send(self, alert: Alert) -> bool:
        try:
            result = self._apprise.notify(
                body=alert.body, title=alert.title, notify_type=alert.level, timeout=self._timeout
            )
        # Apprise reports failures as a result, but a plugin may still raise; an alert
        # must never take its caller (a retrain, the sensor) down with it.
        except Exception:
            log.exception("Alert %r not sent", alert.title)
            return False
        if not result:
            log.warning("Alert %r not delivered to every URL of alerts.urls", alert.title)
        return bool(result)


class BackgroundNotifier:
    """Sends from a thread of its own, so a slow receiver never holds up the caller's loop."""

    def __init__(self, inner: Notifier) -> None:
        self._inner = inner
        self._queue: queue.SimpleQueue[Alert | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> bool:
        self._queue.put(alert)
        return True  # queued: the thread logs a failure

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            self._inner.send(alert)

    def close(self, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        """Send what is queued (waiting at most `timeout`), then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)


def notifier_for(settings: AlertSettings) -> Notifier:
    """The configured notifier: Apprise to `alerts.urls`, or none when the list is empty."""
    return AppriseNotifier(settings.urls) if settings.urls else NoNotifier()


# -- the messages ----------------------------------------------------------------------------
def rejected_alert(name: str, reason: str, where: str, release: str, run_url: str = "") -> Alert:
    """A file was rejected: why, where it is now, how to let it in once fixed."""
    lines = [f"{name} was rejected and not trained on.", f"Reason: {reason}", f"Now at: {where}"]
    lines += [f"To let it in: {release}"] + ([f"Run: {run_url}"] if run_url else [])
    return Alert(f"Arrivals: {name} rejected", "\n".join(lines))


def suspect_alert(name: str, reason: str, run_url: str = "") -> Alert:
    """A file made the challenger lose: held out of training until a person decides."""
    lines = [
        f"{name} is held out of training: the model trained with it lost.",
        f"Evidence: {reason}",
        f"Keep it: arrivals accept {name}",
        f"Drop it for good: arrivals retract {name}",
    ] + ([f"Run: {run_url}"] if run_url else [])
    return Alert(f"Arrivals: {name} is suspect", "\n".join(lines))


# What holds a pending file in each state, and where a person looks first.
STUCK_HINTS = {
    "detected": "it is not announced yet: is the Prefect server reachable (arrivals status)?",
    "announced": "no retrain took it: is the worker running (arrivals status)?",
    "claimed": "a retrain holds it and has not finished: see the run in the Prefect UI",
}


def stuck_alert(name: str, state: str, detected_at: float, now: float) -> Alert:
    """A file has waited longer than alerts.stuck_after_seconds for a decision."""
    minutes = (now - detected_at) / 60
    hint = STUCK_HINTS.get(state, "see arrivals status")
    detected = datetime.fromtimestamp(detected_at, UTC).isoformat(timespec="seconds")
    body = (
        f"{name} was detected {minutes:.0f} min ago ({detected}) and is still {state}: "
        f"no retrain has trained, rejected or held it out yet; {hint}"
    )
    return Alert(f"Arrivals: {name} stuck for {minutes:.0f} min", body, "failure")
