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

from arrivals import topology
from arrivals.environment import (
    child_env,
    prefect_ports,
    replica_api_url,
    replica_env,
    warm_engine_socket,
)
from shared.events import prefect_headers
from shared.settings import Settings

log = logging.getLogger("arrivals.stack")
SENSOR_ALIVE_SECONDS = 15  # the sensor touches its alive file every pass (~0.1 s)


class StackError(RuntimeError):
    """A service could not be started or did not become healthy; the message says which."""


def _bin(name: str) -> str:
    """A console script of this environment (the venv the CLI runs from)."""
    return str(Path(sys.executable).parent / name)


def process_start_time(pid: int) -> str | None:
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
        self.env = child_env(settings)
        self._http = httpx.Client(timeout=2.0, headers=prefect_headers())

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
        return pid if process_start_time(pid) == started else None

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
        started = process_start_time(process.pid) or ""
        self._pidfile(name).write_text(f"{process.pid} {started}\n")
        log.info("Started %s (pid %d), log: %s", name, process.pid, log_path)
        return process.pid

    # -- which services ---------------------------------------------------------------------
    def service_names(self) -> list[str]:
        """Every service of this profile, in start order (the contract's four always exist)."""
        return topology.service_names(self.settings)

    @staticmethod
    def _index(name: str) -> int:
        """0 for `prefect`/`worker`, 1 for `prefect-2`/`worker-2`, ..."""
        tail = name.rsplit("-", 1)[-1]
        return int(tail) - 1 if tail.isdigit() else 0

    # -- health ---------------------------------------------------------------------------
    def _get_ok(self, url: str) -> bool:
        try:
            return self._http.get(url).status_code == 200
        except httpx.HTTPError:
            return False

    def status(self, name: str) -> ServiceStatus:
        pid = self.pid(name)
        s = self.settings
        service = topology.service_of(name)
        if service is topology.PREFECT_SERVER:
            api = replica_api_url(s, self._index(name))
            healthy = pid is not None and self._get_ok(f"{api}/health")
            return ServiceStatus(name, pid, healthy, api.removesuffix("/api"))
        if service is topology.MLFLOW_SERVER:
            healthy = pid is not None and self._get_ok(f"{s.mlflow_url}/health")
            return ServiceStatus(name, pid, healthy, s.mlflow_url)
        if service is topology.SENSOR:
            alive = self.dirs.run / "sensor.alive"
            try:
                stamp, watching = alive.read_text().split()
                fresh = time.time() - float(stamp) < SENSOR_ALIVE_SECONDS and watching == "1"
            except (FileNotFoundError, ValueError):
                fresh = False
            return ServiceStatus(name, pid, pid is not None and fresh)
        if service is topology.PREFECT_SERVICES:
            return ServiceStatus(name, pid, pid is not None)
        if service is topology.WARM_ENGINE:
            return ServiceStatus(name, pid, pid is not None and self._engine_listening())
        return ServiceStatus(name, pid, pid is not None and self._worker_polling(name))

    def _worker_polling(self, name: str) -> bool:
        """The worker process is up and has registered itself with the pool."""
        url = f"{self.settings.prefect_api_url}/work_pools/{self.settings.services.work_pool}"
        try:
            response = self._http.post(f"{url}/workers/filter", json={})
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and any(
            w["name"] == self._worker_name(name) and w.get("status") == "ONLINE"
            for w in response.json()
        )

    def _engine_listening(self) -> bool:
        path = warm_engine_socket(self.settings)
        if path is None:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except OSError:
                return False
        return True

    def _worker_name(self, name: str = topology.WORKER.name) -> str:
        suffix = "" if name == topology.WORKER.name else f"-{self._index(name) + 1}"
        return f"arrivals-{socket.gethostname()}-{self.settings.services.prefect_port}{suffix}"

    def statuses(self) -> dict[str, ServiceStatus]:
        return {name: self.status(name) for name in self.service_names()}

    # -- starting -------------------------------------------------------------------------
    def _check_port_free(self, name: str, port: int) -> None:
        if port_in_use(self.settings.services.client_host, port):
            raise StackError(
                f"{name}: port {port} is in use by another program; stop it or pick another "
                f"port (ARRIVALS_{name.split('-')[0].upper()}_PORT)"
            )

    def start(self, name: str) -> None:
        s = self.settings
        host = s.services.host
        service = topology.service_of(name)
        if service is topology.PREFECT_SERVER:
            port = prefect_ports(s)[self._index(name)]
            self._check_port_free(name, port)
            # `prefect server start`, with SQLite write transactions that cannot fail on a
            # stale read (see arrivals/prefect_server.py).
            argv = [sys.executable, "-m", service.module, "start"]
            argv += ["--host", host, "--port", str(port)]
            if s.scaled:
                argv.append("--no-services")  # the services run once, in prefect-services
            self._spawn(name, argv)
        elif service is topology.PREFECT_SERVICES:
            self._spawn(name, [_bin("prefect"), "server", "services", "start"])
        elif service is topology.MLFLOW_SERVER:
            self._check_port_free(name, s.services.mlflow_port)
            self._spawn(
                name,
                [
                    sys.executable,
                    "-m",
                    service.module,
                    s.mlflow_backend_uri,
                    "--",
                    "--host",
                    host,
                    "--port",
                    str(s.services.mlflow_port),
                    "--artifacts-destination",
                    str(s.mlflow_artifacts),
                    "--workers",
                    "1",
                    *(
                        ["--allowed-hosts", ",".join(s.services.allowed_hosts)]
                        if s.services.expose
                        else []
                    ),
                ],
                env={**self.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
        elif service is topology.WARM_ENGINE:
            socket_path = str(warm_engine_socket(s))
            self._spawn(name, [sys.executable, "-m", service.module, socket_path])
        elif service is topology.WORKER:
            argv = [
                _bin("prefect"),
                "worker",
                "start",
                "--pool",
                s.services.work_pool,
                "--type",
                "process",
                "--name",
                self._worker_name(name),
            ]
            self._spawn(name, argv, env=replica_env(s, self.env, self._index(name)))
        elif service is topology.SENSOR:
            (self.dirs.run / "sensor.alive").unlink(missing_ok=True)
            # The last replica: in the scale profile, events enter through another API server
            # than the one the deployments were applied to, and Redis carries them across.
            replica = len(prefect_ports(s)) - 1
            self._spawn(
                name, [sys.executable, "-m", service.module], env=replica_env(s, self.env, replica)
            )

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

    def _prepare_scale(self) -> None:
        """Create the PostgreSQL databases if missing, migrate Prefect once, create the ledger."""
        from arrivals.scale import ensure_databases

        scale = self.settings.scale
        ensure_databases(
            scale.postgres_url,
            [scale.prefect_database, scale.mlflow_database, scale.ledger_database],
        )
        if any(self.pid(n) for n in self.service_names() if n.startswith("prefect")):
            return  # the servers run: the schema is there
        result = subprocess.run(
            [_bin("prefect"), "server", "database", "upgrade", "-y"],
            env=self.env,
            capture_output=True,
            text=True,
            cwd=self.dirs.home,
        )
        if result.returncode != 0:
            raise StackError(f"prefect database upgrade failed: {result.stderr[-500:]}")

    def up(self, apply: Callable[[Settings], None]) -> dict[str, ServiceStatus]:
        """Start whatever is not running, apply deployments/automations, wait until healthy."""
        from consumer.holdout import HoldoutError, prepare_holdout
        from shared.ledger import Ledger

        s = self.settings
        self.dirs.ensure()
        try:
            prepare_holdout(s)  # cut from the source once, or check the pinned file
        except HoldoutError as error:
            raise StackError(str(error)) from None
        if s.scaled:
            self._prepare_scale()
        Ledger(s.ledger_url).close()  # create the schema once, before its writers start
        if s.services.warm_start and warm_engine_socket(s) is None:
            log.warning(
                "Warm start is off: %s is longer than a UNIX socket path may be; flow runs "
                "start cold (a shorter ARRIVALS_HOME turns it on)",
                s.dirs.engine_socket,
            )
        deadline = time.monotonic() + s.services.startup_timeout_seconds
        names = self.service_names()
        servers = [
            n
            for n in names
            if topology.service_of(n) in (topology.PREFECT_SERVER, topology.MLFLOW_SERVER)
        ]
        # The first API server alone first: at startup it registers block types, and two
        # replicas doing it at once collide on PostgreSQL. MLflow (slow) starts beside it.
        for name in (topology.PREFECT_SERVER.name, topology.MLFLOW_SERVER.name):
            if self.pid(name) is None:
                self.start(name)
        self._wait([topology.PREFECT_SERVER.name], deadline)
        for name in servers:
            if self.pid(name) is None:
                self.start(name)
        self._wait(
            [n for n in servers if topology.service_of(n) is topology.PREFECT_SERVER], deadline
        )
        apply(s)
        for name in names:
            if name not in servers and self.pid(name) is None:
                self.start(name)
        self._wait(names, deadline)
        return self.statuses()

    # -- stopping -------------------------------------------------------------------------
    def down(self, timeout: float = 20.0) -> list[str]:
        """Stop every service this home started (process groups), the consumers first."""
        stopped = []
        known = self.service_names()
        # Pid files of another profile's services (a home switched profiles) count too.
        extra = sorted(p.stem for p in self.dirs.run.glob("*.pid") if p.stem not in known)
        for name in [*reversed(known), *extra]:
            pid = self.pid(name)
            if pid is not None:
                stop_group(pid, timeout)
                stopped.append(name)
            self._pidfile(name).unlink(missing_ok=True)
        return stopped


def stop_group(pid: int, timeout: float) -> None:
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
