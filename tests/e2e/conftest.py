"""End-to-end fixtures: a real stack (Prefect server, MLflow server, worker, sensor).

The stack is started through the operator's own command (`arrivals up --detach`) in a
fresh home with free ports, and stopped by pid with `arrivals down`, whatever happens.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from shared.ledger import Ledger
from shared.settings import Settings, load_settings

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 0.5):
    """Poll `condition` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class RunningStack:
    settings: Settings
    env: dict[str, str]

    def arrivals(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "arrivals"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
        )

    def status(self) -> dict:
        return json.loads(self.arrivals("status", "--json").stdout)

    def ledger(self) -> Ledger:
        return Ledger(self.settings.ledger_url)

    def prefect(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = httpx.request(
            method, f"{self.settings.prefect_api_url}{path}", timeout=10, **kwargs
        )
        response.raise_for_status()
        return response

    def mlflow(self, path: str, **params) -> httpx.Response:
        return httpx.get(
            f"{self.settings.mlflow_url}/api/2.0/mlflow{path}", params=params, timeout=10
        )

    def events(self, name: str, resource_id: str | None = None) -> list[dict]:
        event_filter: dict = {
            "event": {"name": [name]},
            "occurred": {"since": "2000-01-01T00:00:00Z"},
        }
        if resource_id:
            event_filter["resource"] = {"id": [resource_id]}
        body = self.prefect("POST", "/events/filter", json={"filter": event_filter, "limit": 50})
        return body.json()["events"]

    def flow_runs(self, deployment: str, state: str | None = None) -> list[dict]:
        flow_name, deployment_name = deployment.split("/")
        body: dict = {
            "flows": {"name": {"any_": [flow_name]}},
            "deployments": {"name": {"any_": [deployment_name]}},
        }
        if state:
            body["flow_runs"] = {"state": {"type": {"any_": [state]}}}
        return self.prefect("POST", "/flow_runs/filter", json=body).json()

    def wait_terminal(self, name: str, timeout: float = 120):
        """Wait until the ledger has a file of that name in a terminal state."""

        def done():
            ledger = self.ledger()
            try:
                for record in ledger.files():
                    if record.name == name and record.state in ("trained", "rejected"):
                        return record
            finally:
                ledger.close()
            return None

        return wait_for(done, timeout, f"{name} to be trained or rejected")


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Iterator[RunningStack]:
    home = tmp_path_factory.mktemp("arrivals-home")
    env = {
        **os.environ,
        "ARRIVALS_HOME": str(home),
        "ARRIVALS_PREFECT_PORT": str(free_port()),
        "ARRIVALS_MLFLOW_PORT": str(free_port()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("ARRIVALS_CONFIG", None)
    old = {
        k: os.environ.get(k)
        for k in ("ARRIVALS_HOME", "ARRIVALS_PREFECT_PORT", "ARRIVALS_MLFLOW_PORT")
    }
    os.environ.update({k: env[k] for k in old})
    settings = load_settings()
    running = RunningStack(settings, env)
    try:
        started = time.monotonic()
        result = running.arrivals("up", "--detach", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        sys.stderr.write(f"\nstack healthy in {time.monotonic() - started:.1f} s\n")
        yield running
    finally:
        running.arrivals("down", check=False)
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for name in ("prefect", "mlflow", "worker", "sensor"):
            log = home / "logs" / f"{name}.log"
            if log.exists():
                sys.stderr.write(f"\n--- tail of {name}.log ---\n")
                sys.stderr.write("\n".join(log.read_text(errors="replace").splitlines()[-15:]))
