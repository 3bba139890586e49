"""What this host can tell of the roles other hosts run (`arrivals up --only`): reachable or not.

Servers answer their health checks; a worker elsewhere shows as an ONLINE worker of the pool,
a sensor as a heartbeat Prefect received lately. An engine (a UNIX socket) and
prefect-services (no API of its own) cannot be asked from another host.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from arrivals import roles, topology
from arrivals.environment import replica_api_url
from shared.events import SENSOR_HEARTBEAT
from shared.settings import Settings

# A sensor counts as heard from within this many heartbeat intervals (sensor-silent's too).
HEARTBEATS = 3


@dataclass(frozen=True)
class Remote:
    """One process or role another host runs, as seen from here."""

    name: str  # an API server's process name (`prefect-2`), else the role's first process
    role: str
    reachable: bool | None  # None: nothing to ask from here
    url: str | None = None
    detail: str = ""


def remote_names(settings: Settings, selected: frozenset[str]) -> list[tuple[str, str]]:
    """(entry name, role) of what runs elsewhere: each API server by name, other roles once."""
    entries = []
    for role in roles.remote_roles(settings, selected):
        names = [n for n in topology.service_names(settings) if roles.role_of(n) == role]
        by_name = role in (roles.PREFECT, roles.REPLICAS)
        entries += [(name, role) for name in (names if by_name else names[:1])]
    return entries


def probe(settings: Settings, http: httpx.Client, name: str, role: str) -> Remote:
    """Ask whatever answers for `role` on its host."""
    if role in (roles.PREFECT, roles.REPLICAS):
        api = replica_api_url(settings, topology.instance_index(name))
        return Remote(name, role, _answers(http, f"{api}/health"), api.removesuffix("/api"))
    if role == roles.MLFLOW:
        url = settings.mlflow_url
        return Remote(name, role, _answers(http, f"{url}/health"), url)
    if role == roles.WORKER:
        online = _online_workers(settings, http)
        if online is None:
            return Remote(name, role, None, detail="Prefect unreachable: cannot tell")
        return Remote(name, role, online > 0, detail=f"{online} online in the work pool")
    if role == roles.SENSOR:
        heard = _sensor_heard(settings, http)
        if heard is None:
            return Remote(name, role, None, detail="Prefect unreachable: cannot tell")
        return Remote(name, role, heard, detail="heartbeat received" if heard else "no heartbeat")
    return Remote(name, role, None, detail="not checked from here")


def _answers(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _online_workers(settings: Settings, http: httpx.Client) -> int | None:
    pool = settings.services.work_pool
    url = f"{settings.prefect_api_url}/work_pools/{pool}/workers/filter"
    try:
        response = http.post(url, json={})
    except httpx.HTTPError:
        return None
    if response.status_code == 404:
        return 0  # no pool yet: nobody applied, nobody polls
    if response.status_code != 200:
        return None
    return sum(1 for worker in response.json() if worker.get("status") == "ONLINE")


def _sensor_heard(settings: Settings, http: httpx.Client) -> bool | None:
    window = HEARTBEATS * settings.sensor.heartbeat_seconds
    since = datetime.fromtimestamp(time.time() - window, UTC).isoformat()
    body = {
        "filter": {"event": {"name": [SENSOR_HEARTBEAT]}, "occurred": {"since": since}},
        "limit": 1,
    }
    try:
        response = http.post(f"{settings.prefect_api_url}/events/filter", json=body)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return bool(response.json().get("events"))


def reach_word(reachable: bool | None) -> str:
    """How a remote process is shown: reachable, unreachable, or not checked."""
    return {True: "reachable", False: "unreachable", None: "not checked"}[reachable]


def remote_line(statuses: Iterable[Any]) -> str:
    """The remote ones of `Stack.statuses()`, one line (`prefect reachable, ...`); "" if none."""
    return ", ".join(f"{s.name} {reach_word(s.reachable)}" for s in statuses if s.where == "remote")
