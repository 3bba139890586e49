"""The project's events from the Prefect API, one readable line each (`arrivals events`).

`format_event` is pure: it turns one event as the API returns it into a line such as
`18:02:57 arrived    h3.csv (719 B, sha 54b5fea5, push)`. `EventFeed` is the thin HTTP
part: `POST /events/filter` (at most 50 events a page, then `next_page`), and a polling
`poll()` for following, which asks again from a little before the newest event it has
seen and drops the ids it has already returned.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import httpx

from shared import events as names

PROJECT_EVENTS = (
    names.FILE_ARRIVED,
    names.FILE_DUPLICATE,
    names.FILE_REJECTED,
    names.FILE_SUSPECT,
    names.VERSION_REGISTERED,
    names.CHAMPION_PROMOTED,
)
AUTOMATION_TRIGGERED = "prefect.automation.triggered"
AUTOMATION_RESOLVED = "prefect.automation.resolved"
# Only proactive automations (sensor-silent) are alerts; retrain-on-arrival fires per file.
ALERT_EVENTS = (AUTOMATION_TRIGGERED, AUTOMATION_RESOLVED)
# What a person should know when one of the project's proactive automations fires.
ALERT_HINTS = {
    "sensor-silent": "no heartbeat from the inbox sensor: new files are not noticed "
    "(`arrivals status`; `arrivals up --detach` restarts it)",
}
# The flow-run state events a feed can show: a start and every end but a cancellation
# (single flight cancels the runs it finds unneeded).
RUN_STATES = (
    "Running",
    *sorted(state.title() for state in names.RunStates.TERMINAL - {"CANCELLED"}),
)
RUN_EVENTS = tuple(f"prefect.flow-run.{state}" for state in RUN_STATES)
PAGE_SIZE = 50  # the API's maximum page size
VERB_WIDTH = 10


def event_names(*, heartbeats: bool = False, runs: bool = False) -> list[str]:
    """The event names a feed asks for: the project's, alerts, and optionally more."""
    wanted = [*PROJECT_EVENTS, *ALERT_EVENTS]
    if heartbeats:
        wanted.append(names.SENSOR_HEARTBEAT)
    if runs:
        wanted.extend(RUN_EVENTS)
    return wanted


def is_shown(event: dict[str, Any]) -> bool:
    """False for automation events of reactive automations (one per arrival: noise)."""
    if event.get("event") in ALERT_EVENTS:
        return event.get("resource", {}).get("prefect.posture") == "Proactive"
    return True


# -- formatting (pure) ---------------------------------------------------------------------
def parse_time(text: str) -> datetime:
    """An API timestamp (ISO 8601, `Z` or an offset) as an aware datetime."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def human_size(size: float | None) -> str:
    """Bytes as `719 B`, `1.2 KB`, `3.4 MB`."""
    if size is None:
        return "? B"
    if size < 1000:
        return f"{int(size)} B"
    for unit in ("KB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def shorten(text: str, width: int) -> str:
    """One line of at most `width` characters (an ellipsis marks a cut)."""
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _name(event: dict[str, Any]) -> str:
    resource = event.get("resource", {})
    return str(
        event.get("payload", {}).get("name")
        or resource.get("prefect.resource.name")
        or resource.get("prefect.resource.id", "?")
    )


def _related_name(event: dict[str, Any], role: str) -> str | None:
    for related in event.get("related", []) or []:
        if related.get("prefect.resource.role") == role:
            return related.get("prefect.resource.name")
    return None


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _file_list(files: list[str], shown: int = 3) -> str:
    if not files:
        return "no new file: rebuild"
    more = f" +{len(files) - shown} more" if len(files) > shown else ""
    return "files: " + ", ".join(files[:shown]) + more


def describe(event: dict[str, Any], metric: str | None = None) -> tuple[str, str]:
    """(verb, text) for one event; `metric` is the primary metric shown for versions."""
    kind = event.get("event", "")
    payload = event.get("payload", {}) or {}
    resource = event.get("resource", {}) or {}
    if kind == names.FILE_ARRIVED:
        sha = str(payload.get("sha256", ""))[:8]
        details = [human_size(payload.get("size")), f"sha {sha}", payload.get("detected_via", "?")]
        if payload.get("reannounced"):
            details.append(f"announced again, {payload.get('waiting', 1)} waiting")
        return "arrived", f"{_name(event)} ({', '.join(map(str, details))})"
    if kind == names.FILE_DUPLICATE:
        sha = str(payload.get("sha256", ""))[:8]
        return "duplicate", (
            f"{_name(event)} = {payload.get('duplicate_of', '?')} (same content, sha {sha}; "
            "not trained again)"
        )
    if kind == names.FILE_REJECTED:
        return "rejected", f"{_name(event)}: {shorten(payload.get('reason', '?'), 160)}"
    if kind == names.FILE_SUSPECT:
        return "SUSPECT", (
            f"{_name(event)} held out of training: {shorten(payload.get('reason', '?'), 200)} "
            f"(`arrivals accept {_name(event)}` or `arrivals retract {_name(event)}`)"
        )
    if kind == names.VERSION_REGISTERED:
        metrics = payload.get("metrics", {}) or {}
        key = metric if metric in metrics else next(iter(sorted(metrics)), None)
        score = f" {key}={_number(metrics[key])}" if key is not None else ""
        model = resource.get("prefect.resource.name", "?")
        text = f"{model}{score} ({_file_list(payload.get('files') or [])})"
        if payload.get("decision"):
            text += f" - {shorten(payload['decision'], 120)}"
        return "registered", text
    if kind == names.CHAMPION_PROMOTED:
        new, old = payload.get("new_version", "?"), payload.get("old_version")
        model = str(resource.get("prefect.resource.name", "")).rsplit(" v", 1)[0]
        why = "first champion" if old is None else f"was v{old}"
        delta, low, high = (payload.get(k) for k in ("delta", "delta_ci_low", "delta_ci_high"))
        if isinstance(delta, int | float) and old is not None:
            why += f", {payload.get('metric', 'metric')} {delta:+.4f}"
            if isinstance(low, int | float) and isinstance(high, int | float):
                why += f" [CI {low:+.4f}, {high:+.4f}]"
        return "promoted", f"{model} v{new} -> champion ({why})".strip()
    if kind == names.SENSOR_HEARTBEAT:
        watching = "watching" if payload.get("watching") else "NOT watching"
        return "heartbeat", f"{_name(event)}: {watching}, {payload.get('pending', '?')} pending"
    if kind == AUTOMATION_TRIGGERED:
        name = _name(event)
        hint = ALERT_HINTS.get(name, "see the automation in the Prefect UI")
        return "ALERT", f"{name}: {hint}"
    if kind == AUTOMATION_RESOLVED:
        return "resolved", f"automation {_name(event)} resolved"
    if kind.startswith("prefect.flow-run."):
        state = kind.rsplit(".", 1)[1]
        flow = _related_name(event, "flow") or "flow"
        shown = state.lower() if state in ("Running", "Completed") else state.upper()
        return "run", f"{flow}/{_name(event)} {shown}"
    return kind or "event", _name(event)


def format_event(
    event: dict[str, Any], *, tz: tzinfo | None = None, metric: str | None = None
) -> str:
    """One line: local time, a verb, what happened (`tz` None = the local zone)."""
    when = parse_time(event["occurred"]).astimezone(tz).strftime("%H:%M:%S")
    verb, text = describe(event, metric)
    return f"{when} {verb:<{VERB_WIDTH}} {text}"


# -- log lines worth showing next to the events (pure) ---------------------------------------
_LEVEL = re.compile(r"^\S+\s+(?:\|\s*)?(WARNING|ERROR|CRITICAL)\b")
_LEVELS = ("WARNING", "ERROR", "CRITICAL")


def is_alert_line(line: str, minimum: str = "WARNING") -> bool:
    """A line at `minimum` level or above, in the sensor's or Prefect's log format."""
    match = _LEVEL.match(line)
    if match is None:
        return line.startswith("Traceback")
    return _LEVELS.index(match.group(1)) >= _LEVELS.index(minimum)


class LogAlerts:
    """Follows log files from their current end (and across their rotation by the log pump);
    returns only lines at their level or above."""

    def __init__(self, logs: dict[Path, str]) -> None:
        self._follow: dict[str, tuple[Path, str]] = {}
        self._handles = {}
        for path, minimum in logs.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
            handle = path.open("r", errors="replace")
            handle.seek(0, 2)
            self._follow[path.stem] = (path, minimum)
            self._handles[path.stem] = handle

    def _new_lines(self, name: str) -> list[str]:
        path, handle = self._follow[name][0], self._handles[name]
        try:  # before reading: a renamed file gets no more lines, so its end is its end
            rotated = path.stat().st_ino != os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:  # between the pump's rename and its next line
            rotated = False
        lines = handle.readlines()
        if rotated:
            handle.close()
            self._handles[name] = handle = path.open("r", errors="replace")
            lines += handle.readlines()
        return lines

    def read(self) -> list[tuple[str, str]]:
        """New (service, line) pairs worth a person's attention."""
        return [
            (name, line.rstrip("\n"))
            for name, (_path, minimum) in self._follow.items()
            for line in self._new_lines(name)
            if is_alert_line(line, minimum)
        ]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()


# -- the Prefect API (thin) ------------------------------------------------------------------
class FeedUnavailable(RuntimeError):
    """The Prefect API did not answer the events query; the message says where and why."""


class FeedUnauthorized(FeedUnavailable):
    """The Prefect API refused the credentials (its auth string differs from ours, or is unset)."""


class EventFeed:
    """Reads the project's events from one Prefect server."""

    def __init__(
        self,
        api_url: str,
        event_names: Iterable[str],
        *,
        lookback_seconds: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.names = list(event_names)
        self.lookback = timedelta(seconds=lookback_seconds)
        # An exposed stack's API wants its auth string on every request (401 without).
        self._client = client or httpx.Client(timeout=10.0, headers=names.prefect_headers())
        self._seen: OrderedDict[str, None] = OrderedDict()
        # Polls return events from here on (a later `recent` moves it back) ...
        self._covered_from = self._cursor = datetime.now(UTC)

    def close(self) -> None:
        self._client.close()

    def _request(self, method: str, url: str, **kwargs) -> dict[str, Any]:
        try:
            response = self._client.request(method, url, **kwargs)
            if response.status_code == 401:
                raise FeedUnauthorized(
                    f"Prefect API at {self.api_url} refused the credentials (HTTP 401): set "
                    "PREFECT_SERVER_API_AUTH_STRING (or PREFECT_API_AUTH_STRING) to the "
                    "server's auth string"
                )
            response.raise_for_status()
            return response.json()
        except httpx.HTTPError as error:
            raise FeedUnavailable(f"Prefect API unreachable at {self.api_url}: {error}") from error

    def pages(self, since: datetime, order: str, max_events: int) -> Iterator[dict[str, Any]]:
        """Events since `since` in `order` (ASC/DESC), page after page, up to `max_events`."""
        body = {
            "filter": {
                "occurred": {"since": since.isoformat()},
                "event": {"name": self.names},
                "order": order,
            },
            "limit": PAGE_SIZE,
        }
        page = self._request("POST", f"{self.api_url}/events/filter", json=body)
        returned = 0
        while True:
            for event in page.get("events", []):
                yield event
                returned += 1
                if returned >= max_events:
                    return
            next_page = page.get("next_page")
            if not next_page:
                return
            page = self._request("GET", next_page)

    def _remember(self, event: dict[str, Any]) -> bool:
        """True the first time an event id is seen; moves the follow cursor forward."""
        if event["id"] in self._seen:
            return False
        self._seen[event["id"]] = None
        while len(self._seen) > 20_000:
            self._seen.popitem(last=False)
        self._cursor = max(self._cursor, parse_time(event["occurred"]))
        return True

    def recent(self, limit: int, *, days: float = 30) -> list[dict[str, Any]]:
        """The newest `limit` shown events of the last `days`, oldest first.

        Older events within `lookback` of the newest are remembered too (not returned), so
        the next `poll` does not print them as new.
        """
        if limit <= 0:
            return []
        since = datetime.now(UTC) - timedelta(days=days)
        found: list[dict[str, Any]] = []
        newest = None
        for event in self.pages(since, "DESC", max_events=limit * 20 + 5_000):
            when = parse_time(event["occurred"])
            newest = newest or when
            if len(found) < limit:
                if is_shown(event):
                    found.append(event)
            elif when < newest - self.lookback:
                break
            else:
                self._remember(event)
        found.reverse()
        for event in found:
            self._remember(event)
        self._covered_from = since
        return found

    def poll(self) -> list[dict[str, Any]]:
        """Events since the feed was made, not returned before, oldest first.

        Each poll asks again from `lookback` before the newest event seen, so an event that
        reaches the server late (its `occurred` is earlier than one already shown) still shows.
        """
        since = max(self._cursor - self.lookback, self._covered_from)
        fresh = [
            event
            for event in self.pages(since, "ASC", max_events=100_000)
            if is_shown(event) and self._remember(event)
        ]
        return sorted(fresh, key=lambda e: parse_time(e["occurred"]))
