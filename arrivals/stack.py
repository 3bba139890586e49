"""The stack supervisor: start, check and stop the four services of one Arrivals home.

Each service runs in its own session (process group) with its log under `<home>/logs` and
its pid under `<home>/run`. A pid file records the process start time too, so a stale pid
file (a reboot, a reused pid) is never mistaken for a running service.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.settings import Settings

log = logging.getLogger("arrivals.stack")
SERVICES = ("prefect", "mlflow", "worker", "sensor")
SENSOR_ALIVE_SECONDS = 15  # the sensor touches its alive file every pass (~0.1 s)


class StackError(RuntimeError):
    """A service could not be started or did not become healthy; the message says which."""


def _bin(name: str) -> str:
    """A console script of this environment (the venv the CLI runs from)."""
    return str(Path(sys.executable).parent / name)


def _process_start_time(pid: int) -> str | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return fields[19]  # field 22 of stat: start time in clock ticks since boot


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    healthy: bool
    url: str | None = None
    detail: str = ""


class Stack:
    """The services of one home. Every method is safe to call again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dirs = settings.dirs
        self.env = settings.child_env()
        self._http = httpx.Client(timeout=2.0)

    # -- pid files ------------------------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.dirs.run / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """The service's pid if that very process is still running."""
        try:
            pid_text, started = self._pidfile(name).read_text().split()
            pid = int(pid_text)
        except (FileNotFoundError, ValueError):
            return None
        return pid if _process_start_time(pid) == started else None

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
        log_path = self.dirs.logs / f"{name}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env or self.env,
                cwd=self.dirs.home,
                start_new_session=True,  # its own process group: `down` stops its children too
            )
        started = _process_start_time(process.pid) or ""
        self._pidfile(name).write_text(f"{process.pid} {started}\n")
        log.info("Started %s (pid %d), log: %s", name, process.pid, log_path)
        return process.pid

    # -- health ---------------------------------------------------------------------------
    def _get_ok(self, url: str) -> bool:
        try:
            return self._http.get(url).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self, name: str) -> ServiceStatus:
        pid = self.pid(name)
        s = self.settings
        if name == "prefect":
            healthy = pid is not None and self._get_ok(f"{s.prefect_api_url}/health")
            return ServiceStatus(name, pid, healthy, s.prefect_ui_url)
        if name == "mlflow":
            healthy = pid is not None and self._get_ok(f"{s.mlflow_url}/health")
            return ServiceStatus(name, pid, healthy, s.mlflow_url)
        if name == "sensor":
            alive = self.dirs.run / "sensor.alive"
            try:
                stamp, watching = alive.read_text().split()
                fresh = time.time() - float(stamp) < SENSOR_ALIVE_SECONDS and watching == "1"
            except (FileNotFoundError, ValueError):
                fresh = False
            return ServiceStatus(name, pid, pid is not None and fresh)
        return ServiceStatus(name, pid, pid is not None and self._worker_polling())

    def _worker_polling(self) -> bool:
        """The worker process is up and has registered itself with the pool."""
        url = f"{self.settings.prefect_api_url}/work_pools/{self.settings.services.work_pool}"
        try:
            response = self._http.post(f"{url}/workers/filter", json={})
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and any(
            w["name"] == self._worker_name() and w.get("status") == "ONLINE"
            for w in response.json()
        )

    def _worker_name(self) -> str:
        return f"arrivals-{socket.gethostname()}-{self.settings.services.prefect_port}"

    def statuses(self) -> dict[str, ServiceStatus]:
        return {name: self.status(name) for name in SERVICES}

    # -- starting -------------------------------------------------------------------------
    def _check_port_free(self, name: str, port: int) -> None:
        if port_in_use(self.settings.services.host, port):
            raise StackError(
                f"{name}: port {port} is in use by another program; stop it or pick another "
                f"port (ARRIVALS_{name.upper()}_PORT)"
            )

    def start_prefect(self) -> None:
        s = self.settings.services
        self._check_port_free("prefect", s.prefect_port)
        self._spawn(
            "prefect",
            [_bin("prefect"), "server", "start", "--host", s.host, "--port", str(s.prefect_port)],
        )

    def start_mlflow(self) -> None:
        s = self.settings.services
        self._check_port_free("mlflow", s.mlflow_port)
        self._spawn(
            "mlflow",
            [
                sys.executable,
                "-m",
                "arrivals.mlflow_server",
                str(self.dirs.mlflow / "mlflow.db"),
                "--",
                "--host",
                s.host,
                "--port",
                str(s.mlflow_port),
                "--artifacts-destination",
                str(self.dirs.mlflow / "artifacts"),
                "--workers",
                "1",
            ],
            env={**self.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )

    def start_worker(self) -> None:
        self._spawn(
            "worker",
            [
                _bin("prefect"),
                "worker",
                "start",
                "--pool",
                self.settings.services.work_pool,
                "--type",
                "process",
                "--name",
                self._worker_name(),
            ],
        )

    def start_sensor(self) -> None:
        (self.dirs.run / "sensor.alive").unlink(missing_ok=True)
        self._spawn("sensor", [sys.executable, "-m", "automations.sensor"])

    def _wait(self, names: list[str], deadline: float) -> None:
        pending = list(names)
        while pending:
            for name in list(pending):
                status = self.status(name)
                if status.healthy:
                    pending.remove(name)
                elif status.pid is None:
                    raise StackError(
                        f"{name} exited during startup; see {self.dirs.logs / (name + '.log')}"
                    )
            if pending and time.monotonic() > deadline:
                raise StackError(
                    f"not healthy after {self.settings.services.startup_timeout_seconds:.0f} s: "
                    + ", ".join(f"{n} (log: {self.dirs.logs / (n + '.log')})" for n in pending)
                )
            if pending:
                time.sleep(0.25)

    def up(self, apply: Callable[[Settings], None]) -> dict[str, ServiceStatus]:
        """Start whatever is not running, apply deployments/automations, wait until healthy."""
        from shared.dataset import ensure_holdout

        s = self.settings
        self.dirs.ensure()
        ensure_holdout(s.dataset, s.holdout, self.dirs.holdout)
        deadline = time.monotonic() + s.services.startup_timeout_seconds
        starters = {
            "prefect": self.start_prefect,
            "mlflow": self.start_mlflow,
            "worker": self.start_worker,
            "sensor": self.start_sensor,
        }
        for name in ("prefect", "mlflow"):  # the slow ones start first, side by side
            if self.pid(name) is None:
                starters[name]()
        self._wait(["prefect"], deadline)
        apply(s)
        for name in ("worker", "sensor"):
            if self.pid(name) is None:
                starters[name]()
        self._wait(list(SERVICES), deadline)
        return self.statuses()

    # -- stopping -------------------------------------------------------------------------
    def down(self, timeout: float = 20.0) -> list[str]:
        """Stop every service this home started (process groups), the consumers first."""
        stopped = []
        for name in reversed(SERVICES):
            pid = self.pid(name)
            if pid is not None:
                _stop_group(pid, timeout)
                stopped.append(name)
            self._pidfile(name).unlink(missing_ok=True)
        return stopped


def _stop_group(pid: int, timeout: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.1)
    log.warning("process group %d ignored SIGTERM for %.0f s; killing it", pid, timeout)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _reap(pid: int) -> None:
    """Collect our own child if it exited (tests start the stack in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
