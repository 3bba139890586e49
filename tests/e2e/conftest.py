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

from arrivals.harness import write_params
from shared.ledger import Ledger
from shared.settings import Settings, load_settings

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports (API replicas listen side by side)."""
    for _ in range(50):
        first = free_port()
        if first + count <= 65535 and all(_is_free(first + i) for i in range(1, count)):
            return first
    raise RuntimeError(f"no {count} consecutive free ports found")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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

    def mlflow(self, endpoint: str, **params) -> httpx.Response:
        return httpx.get(
            f"{self.settings.mlflow_url}/api/2.0/mlflow{endpoint}", params=params, timeout=10
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

    def active_runs(self, deployment: str) -> list[dict]:
        return [
            run
            for state in ("SCHEDULED", "PENDING", "RUNNING")
            for run in self.flow_runs(deployment, state=state)
        ]

    def quiesce(self, timeout: float = 120) -> None:
        """Wait until nothing is in flight: no producer or retrain run active, an empty inbox
        and no pending file. Checked in the order work flows, so nothing slips between checks."""

        def idle() -> bool:
            if self.active_runs("produce-batch/producer"):
                return False
            if any(self.settings.dirs.inbox.iterdir()):
                return False
            ledger = self.ledger()
            try:
                if ledger.counts()["pending"]:
                    return False
            finally:
                ledger.close()
            return not self.active_runs("retrain/retrain-on-arrival")

        wait_for(idle, timeout, "the stack to be idle")

    def model_versions(self) -> list[dict]:
        """Every registered version of the model, with its tags as a dict."""
        response = self.mlflow(
            "/model-versions/search",
            filter=f"name='{self.settings.model.name}'",
            max_results=1000,
        )
        response.raise_for_status()
        versions = response.json().get("model_versions", [])
        for version in versions:
            version["tags"] = {t["key"]: t["value"] for t in version.get("tags", [])}
        return versions

    def versions_with(self, file_name: str) -> list[str]:
        """Versions that trained on `file_name` for the first time (their new files)."""
        return sorted(
            v["version"]
            for v in self.model_versions()
            if file_name in v["tags"].get("arrivals.files_new", "").split(", ")
        )

    def assert_counts_match_ledger(self) -> None:
        ledger = self.ledger()
        try:
            assert self.status()["files"] == ledger.counts()
        finally:
            ledger.close()

    def service_pid(self, name: str) -> int:
        pid = self.status()["services"][name]["pid"]
        assert pid is not None, f"{name} is not running"
        return pid

    def wait_terminal(self, name: str, timeout: float = 120):
        """Wait until the ledger has a file of that name in a terminal state and, when it was
        trained into a version, until that version is finished (its decision tag is set)."""

        def done():
            ledger = self.ledger()
            try:
                record = next(
                    (
                        r
                        for r in reversed(ledger.files())
                        if r.name == name and r.state in ("trained", "rejected", "suspect")
                    ),
                    None,
                )
            finally:
                ledger.close()
            if record is None or record.model_version is None:
                return record
            return record if self._decided(record.model_version) else None

        return wait_for(done, timeout, f"{name} to be trained, rejected or suspect")

    def _decided(self, version: str) -> bool:
        response = self.mlflow(
            "/model-versions/get", name=self.settings.model.name, version=version
        )
        if response.status_code != 200:
            return False
        tags = response.json()["model_version"].get("tags", [])
        return any(tag["key"] == "arrivals.decision" for tag in tags)


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory) -> Iterator[RunningStack]:
    """A running stack for one test module; the module may set PARAMS_OVERRIDES (merged
    into the shipped params.yaml) or CONFIG_FILE (another params.yaml, used as it is)."""
    home = tmp_path_factory.mktemp("arrivals-home")
    env = {
        **os.environ,
        "ARRIVALS_HOME": str(home),
        "ARRIVALS_PREFECT_PORT": str(free_ports(4)),
        "ARRIVALS_MLFLOW_PORT": str(free_port()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    overrides = getattr(request.module, "PARAMS_OVERRIDES", None)
    config_file = getattr(request.module, "CONFIG_FILE", None)  # e.g. an examples/ config
    if config_file:
        env["ARRIVALS_CONFIG"] = str(config_file)
    elif overrides:
        env["ARRIVALS_CONFIG"] = str(
            write_params(tmp_path_factory.mktemp("config") / "params.yaml", overrides)
        )
    else:
        env.pop("ARRIVALS_CONFIG", None)
    keys = ("ARRIVALS_HOME", "ARRIVALS_PREFECT_PORT", "ARRIVALS_MLFLOW_PORT", "ARRIVALS_CONFIG")
    old = {k: os.environ.get(k) for k in keys}
    for key in keys:
        if key in env:
            os.environ[key] = env[key]
        else:
            os.environ.pop(key, None)
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
