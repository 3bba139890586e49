"""Reaching the services a command needs, and the one line an operator reads when one is down.

A command that needs Prefect, its worker or MLflow probes them before it changes anything
(`require`), and runs its Prefect calls inside `prefect_calls`, which turns a connection
that fails midway into the same `ServiceUnreachable`. `arrivals.cli.main` catches it once
and prints its message: one line, no traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from shared.events import prefect_headers
from shared.settings import Settings

PREFECT = "prefect"
WORKER = "worker"
MLFLOW = "mlflow"
START_HINT = "start the stack with `arrivals up --detach`"
PROBE_TIMEOUT_SECONDS = 3.0


class ServiceUnreachable(RuntimeError):
    """A service a command needs does not answer; str() is the whole message, one line."""

    def __init__(self, message: str, *, service: str) -> None:
        super().__init__(message)
        self.service = service

    def then(self, advice: str) -> ServiceUnreachable:
        """The same error with what to do once the service is back (e.g. re-run the command)."""
        return ServiceUnreachable(f"{self}; then {advice}", service=self.service)


def not_running(service: str, url: str, error: Exception | None = None) -> ServiceUnreachable:
    """`Prefect is not running at <url>: start the stack with ...` (a timeout says so)."""
    label = "Prefect" if service == PREFECT else "MLflow"
    if error is None or isinstance(error, httpx.ConnectError):
        return ServiceUnreachable(f"{label} is not running at {url}: {START_HINT}", service=service)
    # It accepted the connection but did not answer: "not running" would send people astray.
    kind = type(error).__name__
    return ServiceUnreachable(
        f"{label} did not answer at {url} ({kind}): see `arrivals status` and "
        f"<home>/logs/{service}.log",
        service=service,
    )


def _probe(client: httpx.Client, method: str, url: str, **kwargs) -> httpx.Response | None:
    """The response, or None when nothing answers (refused, reset, timed out)."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.TransportError:
        return None


def require(settings: Settings, *services: str, client: httpx.Client | None = None) -> None:
    """Raise `ServiceUnreachable` for the first of `services` that is not there; change nothing.

    `prefect` and `mlflow` must answer their health check; `worker` means a worker polls the
    work pool (without one, a run the command starts would wait in Scheduled until it gives up).
    """
    own = client is None
    http = client or httpx.Client(timeout=PROBE_TIMEOUT_SECONDS, headers=prefect_headers())
    try:
        for service in services:
            _require_one(settings, service, http)
    finally:
        if own:
            http.close()


def _require_one(settings: Settings, service: str, http: httpx.Client) -> None:
    api = settings.prefect_api_url
    if service == PREFECT:
        if _probe(http, "GET", f"{api}/health") is None:
            raise not_running(PREFECT, api)
    elif service == MLFLOW:
        if _probe(http, "GET", f"{settings.mlflow_url}/health") is None:
            raise not_running(MLFLOW, settings.mlflow_url)
    elif service == WORKER:
        pool = settings.services.work_pool
        response = _probe(http, "POST", f"{api}/work_pools/{pool}/workers/filter", json={})
        if response is None:
            raise not_running(PREFECT, api)
        # A missing pool (404) means `up` never applied it: no worker polls it either.
        online = response.status_code == 200 and any(
            worker.get("status") == "ONLINE" for worker in response.json()
        )
        if not online:
            raise ServiceUnreachable(
                f"no worker polls the work pool {pool!r} at {api}, so a run would never "
                f"start: {START_HINT}",
                service=WORKER,
            )
    else:
        raise ValueError(f"unknown service {service!r}")


@contextmanager
def prefect_calls(settings: Settings) -> Iterator[None]:
    """Turn a Prefect connection that fails inside the block into `ServiceUnreachable`."""
    try:
        yield
    except httpx.TransportError as error:
        raise not_running(PREFECT, settings.prefect_api_url, error) from error
