"""A running stack in a temporary home, on free ports: what the end-to-end tests and the
benchmark both start, drive and stop."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from arrivals.environment import prefect_ports
from arrivals.processes import port_in_use, process_start_time, stop_group
from arrivals.stack import StackError
from shared.events import RunStates
from shared.ledger import FileRecord, FileState, Ledger
from shared.settings import DEFAULT_CONFIG, Settings, load_settings

log = logging.getLogger("arrivals.harness")
T = TypeVar("T")

BIN = Path(sys.executable).parent
PREFECT_PORTS = 4  # reserved side by side for the scale profile's API replicas
STACK_VARIABLES = (
    "ARRIVALS_HOME",
    "ARRIVALS_CONFIG",
    "ARRIVALS_PREFECT_PORT",
    "ARRIVALS_MLFLOW_PORT",
    "ARRIVALS_SERVE_PORT",
)
QUIET = {  # no usage reports from a throwaway stack
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}
DECIDED_FILE_STATES = (FileState.TRAINED, FileState.REJECTED, FileState.SUSPECT)
DECISION_TAG = "arrivals.decision"


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_params(path: Path, *overrides: dict) -> Path:
    """Write the shipped params.yaml with each of `overrides` merged in, key by nested key.

    The dataset source is made absolute, so the new file works from any folder. Used by the
    benchmark and the tests to run isolated stacks; handy for scripted setups too.
    """
    params = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    source = params["dataset"].get("source")
    if source and not Path(source).is_absolute():
        params["dataset"]["source"] = str((DEFAULT_CONFIG.parent / source).resolve())
    for override in overrides:
        params = _merge(params, override)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


class WaitTimedOut(AssertionError):
    """A condition did not hold in time (an AssertionError: a test that waits fails as one)."""


def wait_for(condition: Callable[[], T | None], timeout: float, what: str, every: float = 0.5) -> T:
    """Poll `condition` until it returns something truthy; WaitTimedOut naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def free_ports(count: int = 1, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive TCP ports on `host` that nothing listens on."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind((host, 0))
            first = sock.getsockname()[1]
        if first + count <= 65536 and not any(
            port_in_use(host, first + i) for i in range(1, count)
        ):
            return first
    raise StackError(f"no {count} consecutive free ports found on {host}")


@contextlib.contextmanager
def stack_environ(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ names the stack of `env` (home, config, ports) in the block, so code run
    in this process sees the same stack as the CLI; restored afterwards."""
    old = {key: os.environ.get(key) for key in STACK_VARIABLES}
    try:
        for key in STACK_VARIABLES:
            if key in env:
                os.environ[key] = env[key]
            else:
                os.environ.pop(key, None)
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def stop_by_pidfiles(run_dir: Path, timeout: float = 20.0) -> list[int]:
    """Stop the process groups of `<home>/run/*.pid` ("pid start-time", as the stack writes).

    The fallback when `arrivals down` itself fails: a pid whose start time differs is some
    other process now and is left alone.
    """
    stopped = []
    for pidfile in sorted(run_dir.glob("*.pid")):
        try:
            pid_text, started = pidfile.read_text().split()[:2]
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if process_start_time(pid) == started:
            stop_group(pid, timeout)
            stopped.append(pid)
    return stopped


class RunningStack:
    """One stack of its own, driven through the operator's CLI and read through its APIs."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.settings = settings
        self.env = env
        self.http = httpx.Client(timeout=10.0)
        self.up_seconds: float | None = None
        self._ledger: Ledger | None = None

    @classmethod
    def fresh(cls, home: Path, config: Path | None = None) -> RunningStack:
        """A stack to run in `home` with `config` (else the shipped params.yaml) on free ports."""
        first = free_ports(PREFECT_PORTS + 2)
        env = {
            **os.environ,
            **QUIET,
            "ARRIVALS_HOME": str(home),
            "ARRIVALS_PREFECT_PORT": str(first),
            "ARRIVALS_MLFLOW_PORT": str(first + PREFECT_PORTS),
            "ARRIVALS_SERVE_PORT": str(first + PREFECT_PORTS + 1),
        }
        if config is None:
            env.pop("ARRIVALS_CONFIG", None)
        else:
            env["ARRIVALS_CONFIG"] = str(config)
        with stack_environ(env):
            settings = load_settings()
        return cls(settings, env)

    # -- starting and stopping ------------------------------------------------------------
    def arrivals(
        self, *args: str, check: bool = True, timeout: float = 300, **kwargs
    ) -> subprocess.CompletedProcess:
        """Run the `arrivals` CLI against this stack."""
        return subprocess.run(
            [str(BIN / "arrivals"), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            **kwargs,
        )

    def up(self, *options: str) -> None:
        """`arrivals up --detach [options]`; StackError with the CLI's last lines if it fails."""
        s = self.settings
        log.info(
            "Starting a stack in %s (Prefect :%d, MLflow :%d, worker poll %g s)",
            s.home,
            s.services.prefect_port,
            s.services.mlflow_port,
            s.services.worker_query_seconds,
        )
        started = time.monotonic()
        timeout = s.services.startup_timeout_seconds + 120
        result = self.arrivals("up", "--detach", *options, check=False, timeout=timeout)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise StackError(f"arrivals up failed (exit {result.returncode}):\n{tail}")
        self.up_seconds = time.monotonic() - started
        log.info("Stack healthy in %.1f s", self.up_seconds)

    def down(self) -> None:
        """`arrivals down`, else the pid files; shielded from Ctrl-C and SIGTERM meanwhile."""
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        self.http.close()
        # Stopping must finish even when the caller is being interrupted: a half-stopped
        # stack keeps its ports and processes.
        shielded = {
            sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            try:
                result = self.arrivals("down", check=False, timeout=180, start_new_session=True)
                failure = result.stderr.strip()[-500:] if result.returncode != 0 else None
            except subprocess.TimeoutExpired:
                failure = "timed out after 180 s"
            if failure is not None:
                log.error("arrivals down failed (%s); stopping by pid files instead", failure)
                stopped = stop_by_pidfiles(self.settings.dirs.run)
                log.info("Stopped process groups %s", stopped or "(none was running)")
        finally:
            for sig, previous in shielded.items():
                signal.signal(sig, previous)
        s = self.settings
        for port in [*prefect_ports(s), s.services.mlflow_port, s.services.serve_port]:
            if port_in_use(s.services.host, port):
                log.error("port %d still answers after stopping %s", port, s.home)
        log.info("Stack in %s stopped", s.home)

    # -- reading its records ----------------------------------------------------------------
    def status(self) -> dict:
        return json.loads(self.arrivals("status", "--json").stdout)

    def ledger(self) -> Ledger:
        """A new connection to the home's ledger; the caller closes it."""
        return Ledger(self.settings.ledger_url)

    @property
    def open_ledger(self) -> Ledger:
        """The harness's own ledger connection (opened on first use, closed by `down`)."""
        if self._ledger is None:
            self._ledger = Ledger(self.settings.ledger_url)
        return self._ledger

    def prefect(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.http.request(method, f"{self.settings.prefect_api_url}{path}", **kwargs)
        response.raise_for_status()
        return response

    def mlflow(self, endpoint: str, **params) -> httpx.Response:
        return self.http.get(f"{self.settings.mlflow_url}/api/2.0/mlflow{endpoint}", params=params)

    def events(self, name: str, resource_id: str | None = None) -> list[dict]:
        """The events `name` (about `resource_id`) Prefect received (up to 50)."""
        event_filter: dict = {
            "event": {"name": [name]},
            "occurred": {"since": "2000-01-01T00:00:00Z"},
        }
        if resource_id:
            event_filter["resource"] = {"id": [resource_id]}
        body = self.prefect("POST", "/events/filter", json={"filter": event_filter, "limit": 50})
        return body.json()["events"]

    def flow_run(self, run_id: str) -> dict:
        return self.prefect("GET", f"/flow_runs/{run_id}").json()

    def flow_runs(self, deployment: str, state: str | None = None) -> list[dict]:
        """Runs of `deployment` ("flow/deployment"), only those in `state` if given."""
        return self._flow_runs(deployment, [state] if state else None)

    def active_runs(self, deployment: str) -> list[dict]:
        return self._flow_runs(deployment, sorted(RunStates.ACTIVE))

    def _flow_runs(self, deployment: str, states: list[str] | None) -> list[dict]:
        flow_name, deployment_name = deployment.split("/")
        body: dict = {
            "flows": {"name": {"any_": [flow_name]}},
            "deployments": {"name": {"any_": [deployment_name]}},
        }
        if states:
            body["flow_runs"] = {"state": {"type": {"any_": states}}}
        return self.prefect("POST", "/flow_runs/filter", json=body).json()

    def wait_run_ended(self, run_id: str, timeout: float, every: float = 0.5) -> dict:
        """The flow run once it is in a terminal state."""
        return wait_for(
            lambda: (run := self.flow_run(run_id))["state_type"] in RunStates.TERMINAL and run,
            timeout,
            f"flow run {run_id} to end",
            every=every,
        )

    def quiesce(self, timeout: float = 120) -> None:
        """Wait until nothing is in flight: no producer or retrain run active, an empty inbox
        and no pending file. Checked in the order work flows, so nothing slips between checks."""

        def idle() -> bool:
            if self.active_runs("produce-batch/producer"):
                return False
            if any(self.settings.dirs.inbox.iterdir()):
                return False
            if self.open_ledger.counts()["pending"]:
                return False
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
        assert self.status()["files"] == self.open_ledger.counts()

    def service_pid(self, name: str) -> int:
        pid = self.status()["services"][name]["pid"]
        assert pid is not None, f"{name} is not running"
        return pid

    def wait_terminal(self, name: str, timeout: float = 120, every: float = 0.5) -> FileRecord:
        """Wait until the ledger has a file of that name in a terminal state and, when it was
        trained into a version, until that version is finished (its decision tag is set)."""

        def done() -> FileRecord | None:
            record = next(
                (
                    r
                    for r in reversed(self.open_ledger.files())
                    if r.name == name and r.state in DECIDED_FILE_STATES
                ),
                None,
            )
            if record is None or record.model_version is None:
                return record
            return record if self._decided(record.model_version) else None

        return wait_for(done, timeout, f"{name} to be trained, rejected or suspect", every=every)

    def _decided(self, version: str) -> bool:
        response = self.mlflow(
            "/model-versions/get", name=self.settings.model.name, version=version
        )
        if response.status_code != 200:
            return False
        tags = response.json()["model_version"].get("tags", [])
        return any(tag["key"] == DECISION_TAG for tag in tags)

    def version_created(self, version: str) -> float:
        """MLflow's creation time of a version of the model, in epoch seconds."""
        response = self.mlflow(
            "/model-versions/get", name=self.settings.model.name, version=version
        )
        response.raise_for_status()
        return int(response.json()["model_version"]["creation_timestamp"]) / 1000

    def count_runs(
        self, flow: str, states: Collection[str] | None = None, after: float | None = None
    ) -> int:
        """Runs of `flow` in `states`, expected to start after `after` (epoch seconds)."""
        runs: dict[str, Any] = {}
        if states is not None:
            runs["state"] = {"type": {"any_": sorted(states)}}
        if after is not None:
            runs["expected_start_time"] = {"after_": datetime.fromtimestamp(after, UTC).isoformat()}
        body: dict[str, Any] = {"flows": {"name": {"any_": [flow]}}}
        if runs:
            body["flow_runs"] = runs
        return int(self.prefect("POST", "/flow_runs/count", json=body).json())
