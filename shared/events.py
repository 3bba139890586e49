"""The event contract and a confirmed way to deliver events to Prefect.

Prefect's `emit_event` only queues: it returns even when the server is down and the event
is lost when the process exits. `ConfirmedEmitter` POSTs to `{api}/events`, which answers
204 only once the server has the event, so the caller knows whether to retry. Event ids
are deterministic (uuid5 of what the event is about), so a retry of an event the server
already has is dropped by the server instead of counted twice.
"""

from __future__ import annotations

import base64
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

FILE_ARRIVED = "inbox.file.arrived"
FILE_DUPLICATE = "inbox.file.duplicate"
FILE_REJECTED = "inbox.file.rejected"
FILE_SUSPECT = "inbox.file.suspect"  # a challenger lost with confidence and this file is why
SENSOR_HEARTBEAT = "inbox.sensor.heartbeat"
VERSION_REGISTERED = "model.version.registered"
CHAMPION_PROMOTED = "model.champion.promoted"

_NAMESPACE = uuid.UUID("5b0e7a53-3f55-4d2c-9a59-6f7d8c0e2a11")
log = logging.getLogger(__name__)


def file_resource_id(sha256: str) -> str:
    return f"inbox.file.{sha256}"


def model_resource_id(model: str, version: str) -> str:
    return f"mlflow.model.{model}.{version}"


def event_id(*parts: object) -> str:
    """A deterministic event id: the same fact always gets the same id."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(part) for part in parts)))


@dataclass
class Event:
    """One Prefect event, as the `POST /events` API takes it."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any]
    id: str
    related: list[dict[str, str]] = field(default_factory=list)
    occurred: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "occurred": self.occurred.isoformat(),
            "event": self.event,
            "resource": self.resource,
            "related": self.related,
            "payload": self.payload,
        }


def inbox_related(inbox: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"inbox.folder.{socket.gethostname()}",
        "prefect.resource.role": "inbox",
        "prefect.resource.name": inbox,
    }


def file_event(
    name: str,
    *,
    sha256: str,
    file_name: str,
    payload: dict[str, Any],
    id: str,
    related: Sequence[dict[str, str]] = (),
) -> Event:
    """An `inbox.file.*` event about one content, named after the file for the UI."""
    return Event(
        event=name,
        resource={
            "prefect.resource.id": file_resource_id(sha256),
            "prefect.resource.name": file_name,
        },
        payload=payload,
        id=id,
        related=list(related),
    )


def prefect_headers() -> dict[str, str]:
    """Basic auth for a Prefect server that has an auth string (an exposed stack)."""
    auth = os.environ.get("PREFECT_API_AUTH_STRING") or os.environ.get(
        "PREFECT_SERVER_API_AUTH_STRING"
    )
    if not auth:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


class Emitter(Protocol):
    def emit(self, events: Sequence[Event]) -> None:
        """Deliver events or raise `EventNotDelivered`."""


class EventNotDelivered(RuntimeError):
    """The Prefect API did not confirm the events; the caller keeps them and retries."""


class ConfirmedEmitter:
    """POSTs events to the Prefect API and raises unless the API accepted them."""

    def __init__(self, api_url: str, *, timeout: float = 10.0) -> None:
        self._url = api_url.rstrip("/") + "/events"
        self._client = httpx.Client(timeout=timeout, headers=prefect_headers())

    def emit(self, events: Sequence[Event]) -> None:
        if not events:
            return
        try:
            response = self._client.post(self._url, json=[e.to_json() for e in events])
        except httpx.HTTPError as error:
            raise EventNotDelivered(f"Prefect API unreachable at {self._url}: {error}") from error
        if response.status_code >= 300:
            raise EventNotDelivered(
                f"Prefect API refused {len(events)} event(s): "
                f"HTTP {response.status_code} {response.text[:200]}"
            )

    def close(self) -> None:
        self._client.close()


class StoredEvents(Protocol):
    def stored(self, ids: Sequence[str], since: datetime) -> set[str]:
        """Which of `ids` (events that occurred after `since`) the event store holds."""


class EventStore:
    """Looks events up by id in what Prefect stored (`POST /events/filter`).

    An accepted event (204) is on Prefect's message broker, not yet in its database: the
    event persister writes it a few seconds later, and a broker or server restart in
    between loses it. What is stored is what the UI, the feed and the lineage show.
    """

    PAGE = 50  # the API's largest page (INTERACTIVE_PAGE_SIZE)

    def __init__(self, api_url: str, *, timeout: float = 10.0) -> None:
        self._url = api_url.rstrip("/") + "/events/filter"
        self._client = httpx.Client(timeout=timeout, headers=prefect_headers())

    def stored(self, ids: Sequence[str], since: datetime) -> set[str]:
        """Raises `EventNotDelivered` when the API cannot say (down, or an error)."""
        found: set[str] = set()
        for start in range(0, len(ids), self.PAGE):
            page = list(ids[start : start + self.PAGE])
            body = {
                "filter": {"id": {"id": page}, "occurred": {"since": since.isoformat()}},
                "limit": self.PAGE,
            }
            try:
                response = self._client.post(self._url, json=body)
            except httpx.HTTPError as error:
                unreachable = f"Prefect API unreachable at {self._url}: {error}"
                raise EventNotDelivered(unreachable) from error
            if response.status_code != 200:
                raise EventNotDelivered(
                    f"Prefect API could not list events: HTTP {response.status_code}"
                )
            found.update(event["id"] for event in response.json()["events"])
        return found

    def close(self) -> None:
        self._client.close()


class RunStates:
    """Asks the Prefect API whether a flow run has ended (so its claims can be released)."""

    TERMINAL = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
    # Not over yet: waiting for a worker, running, or on its way to a terminal state.
    ACTIVE = frozenset({"SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"})

    def __init__(self, api_url: str, *, timeout: float = 10.0) -> None:
        self._api = api_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, headers=prefect_headers())

    def ended(self, flow_run_id: str) -> bool:
        """True when the run is over (or unknown to the server); False if unsure."""
        try:
            response = self._client.get(f"{self._api}/flow_runs/{flow_run_id}")
        except httpx.HTTPError:
            return False
        if response.status_code == 404:
            return True
        if response.status_code != 200:
            return False
        return response.json().get("state_type") in self.TERMINAL

    def close(self) -> None:
        self._client.close()
