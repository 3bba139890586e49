"""The stack supervisor: start, check and stop the four services of one Arrivals home.

Each service runs in its own session (process group) with its log under `<home>/logs` and
its pid under `<home>/run`. A pid file records the process start time too, so a stale pid
file (a reboot, a reused pid) is never mistaken for a running service.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from arrivals import remote, roles, topology
from arrivals.environment import (
    child_env,
    mlflow_allowed_hosts,
    prefect_ports,
    replica_api_url,
    replica_env,
    warm_engine_socket,
)
from arrivals.processes import port_in_use, process_start_time, stop_group
from shared.events import prefect_headers
from shared.settings import Settings

log = logging.getLogger("arrivals.stack")
SENSOR_ALIVE_SECONDS = 15  # the sensor touches its alive file every pass (~0.1 s)


class StackError(RuntimeError):
    """A service could not be started or did not become healthy; the message says which."""


def _bin(name: str) -> str:
    """A console script of this environment (the venv the CLI runs from)."""
    return str(Path(sys.executable).parent / name)


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    healthy: bool
    url: str | None = None
    detail: str = ""
    where: str = "local"  # "remote": another host runs it (`arrivals up --only`)
    reachable: bool | None = None  # remote only; None: it cannot be asked from here


class Stack:
    """The services of one home. Every method is safe to call again."""

    def __init__(self, settings: Settings, selected: frozenset[str] | None = None) -> None:
        self.settings = settings
        # The roles this host runs (`up --only`); by default what the home's last `up` ran.
        self.roles = roles.recorded_roles(settings) if selected is None else selected
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
        size, backups = self.settings.services.log_max_bytes, self.settings.services.log_backups
        # The log pump execs argv (same pid, same process group: `down` stops both) with its
        # output piped into a pump that rotates the file by size.
        pumped = [sys.executable, "-m", topology.LOG_PUMP, str(log_path), str(size), str(backups)]
        # Opened here too: whatever fails before the pump runs still lands in the log.
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [*pumped, "--", *argv],
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
        """This host's processes of the profile (all of them by default), in start order."""
        return roles.local_names(self.settings, self.roles)

    @staticmethod
    def _index(name: str) -> int:
        return topology.instance_index(name)

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
        if service is topology.SERVE:
            # /version answers before any champion exists (/ping says 503 until one does).
            healthy = pid is not None and self._get_ok(f"{s.serve_url}/version")
            return ServiceStatus(name, pid, healthy, s.serve_url)
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
        """This host's processes, then what other hosts run (reachable or not)."""
        found = {name: self.status(name) for name in self.service_names()}
        for name, role in remote.remote_names(self.settings, self.roles):
            seen = remote.probe(self.settings, self._http, name, role)
            healthy = seen.reachable is not False  # what cannot be asked is not known down
            found[name] = ServiceStatus(
                name, None, healthy, seen.url, seen.detail, "remote", seen.reachable
            )
        return found

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
                        ["--allowed-hosts", ",".join(mlflow_allowed_hosts(s))]
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
        elif service is topology.SERVE:
            self._check_port_free(name, s.services.serve_port)
            self._spawn(name, [sys.executable, "-m", service.module])
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

    def _prepare_scale(self, migrate: bool) -> None:
        """Create the PostgreSQL databases if missing; with `migrate`, migrate Prefect once."""
        from arrivals.scale import ensure_databases, migrate_prefect

        scale = self.settings.scale
        ensure_databases(
            scale.postgres_url,
            [scale.prefect_database, scale.mlflow_database, scale.ledger_database],
        )
        if not migrate or any(self.pid(n) for n in self.service_names() if n.startswith("prefect")):
            return  # another host's first API server migrates, or the servers run already
        failure = migrate_prefect(_bin("prefect"), self.env, self.dirs.home)
        if failure is not None:
            raise StackError(f"prefect database upgrade failed: {failure}")

    def _start_missing(self, names: list[str]) -> None:
        for name in names:
            if self.pid(name) is None:
                self.start(name)

    def _wait_remote_prefect(self, deadline: float) -> None:
        """Another host runs the first API server: wait until it answers."""
        while not self._get_ok(f"{self.settings.prefect_api_url}/health"):
            if time.monotonic() > deadline:
                raise StackError(
                    f"Prefect at {self.settings.prefect_ui_url} did not answer in "
                    f"{self.settings.services.startup_timeout_seconds:.0f} s: start it on its "
                    "host (`arrivals up --only prefect`) or set services.prefect_host"
                )
            time.sleep(0.5)

    def up(
        self,
        apply: Callable[[Settings], None],
        applied: Callable[[Settings], bool] = topology.applied,
    ) -> dict[str, ServiceStatus]:
        """Start this host's roles that are not running, apply deployments/automations when
        this host should (see roles.up_plan), wait until they are healthy."""
        from consumer.holdout import HoldoutError, prepare_holdout
        from shared.ledger_migrations import LedgerSchemaError, upgrade_ledger

        s = self.settings
        plan = roles.up_plan(s, self.roles)
        self.dirs.ensure()
        # What still runs from an earlier `up` stays this host's, shown as local.
        self.roles |= {roles.role_of(n) for n in topology.service_names(s) if self.pid(n)}
        roles.record_roles(s, self.roles)
        if plan.prepare_data:
            try:
                prepare_holdout(s)  # cut from the source once, or check the pinned file
            except HoldoutError as error:
                raise StackError(str(error)) from None
        if s.scaled:
            self._prepare_scale(plan.migrate)
        if plan.prepare_data:
            try:  # create the schema, or upgrade it to the head, before its writers start
                upgrade_ledger(s.ledger_url)
            except LedgerSchemaError as error:
                raise StackError(str(error)) from None
        if roles.ENGINE in self.roles and s.services.warm_start and warm_engine_socket(s) is None:
            log.warning(
                "Warm start is off: %s is longer than a UNIX socket path may be; flow runs "
                "start cold (a shorter ARRIVALS_HOME turns it on)",
                s.dirs.engine_socket,
            )
        deadline = time.monotonic() + s.services.startup_timeout_seconds
        # The first API server alone first: at startup it registers block types, and two
        # replicas doing it at once collide on PostgreSQL. MLflow (slow) starts beside it.
        self._start_missing(plan.first)
        if topology.PREFECT_SERVER.name in plan.first:
            self._wait([topology.PREFECT_SERVER.name], deadline)
        elif plan.await_remote_prefect:
            self._wait_remote_prefect(deadline)
        self._start_missing(plan.replicas)
        self._wait(plan.replicas, deadline)
        if plan.apply is roles.Apply.ALWAYS or (
            plan.apply is roles.Apply.IF_MISSING and not applied(s)
        ):
            apply(s)
        self._start_missing(plan.rest)
        self._wait(self.service_names(), deadline)
        return self.statuses()

    # -- stopping -------------------------------------------------------------------------
    def down(self, timeout: float = 20.0) -> list[str]:
        """Stop every service this home started (process groups), the consumers first."""
        stopped = []
        known = topology.service_names(self.settings)  # every role: whatever this home runs
        # Pid files of another profile's services (a home switched profiles) count too.
        extra = sorted(p.stem for p in self.dirs.run.glob("*.pid") if p.stem not in known)
        for name in [*reversed(known), *extra]:
            pid = self.pid(name)
            if pid is not None:
                stop_group(pid, timeout)
                stopped.append(name)
            self._pidfile(name).unlink(missing_ok=True)
        return stopped
