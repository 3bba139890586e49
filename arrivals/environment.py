"""What the processes of a stack are given: ports, API replicas, environments, the engine socket.

Pure functions of `Settings` (and, where said, of an inherited environment): the supervisor
(`arrivals.stack`) and the CLI use them to start and reach this home's services.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from shared.settings import Settings

FLOW_HEARTBEAT_SECONDS = 30

AF_UNIX_PATH_MAX = 108  # bytes, the terminating NUL included (Linux)


def prefect_ports(settings: Settings) -> list[int]:
    """One port per Prefect API replica (one in the embedded profile), consecutive."""
    replicas = settings.scale.api_replicas if settings.scaled else 1
    return [settings.services.prefect_port + i for i in range(replicas)]


def replica_api_url(settings: Settings, replica: int) -> str:
    """The API of one replica; any index is taken modulo the replicas (spreads clients)."""
    ports = prefect_ports(settings)
    return settings.services.prefect_api_url(ports[replica % len(ports)])


def socket_path_fits(path: Path) -> bool:
    """Whether a UNIX socket can be bound at `path` (its bytes plus a NUL within sun_path)."""
    return len(os.fsencode(path)) < AF_UNIX_PATH_MAX


def warm_engine_socket(settings: Settings) -> Path | None:
    """Where flow runs start warm (`arrivals.warm_engine`), or None: they start cold.

    Also None when the home is so deep that the socket path would not fit AF_UNIX's
    108 bytes: warm start only ever saves time, it is never worth a failed start."""
    path = settings.dirs.engine_socket
    return path if settings.services.warm_start and socket_path_fits(path) else None


def mlflow_allowed_hosts(settings: Settings) -> list[str]:
    """MLflow's `--allowed-hosts`: the configured names, and how this machine's clients reach it.

    Given any list, MLflow stops allowing loopback by default; the worker, the retrain and
    `arrivals status` still reach it at `client_host` (or 127.0.0.1), so those stay allowed."""
    port = settings.services.mlflow_port
    hosts = list(settings.services.allowed_hosts)
    for host in (settings.services.client_host, "127.0.0.1", "localhost"):
        if f"{host}:{port}" not in hosts:
            hosts.append(f"{host}:{port}")
    return hosts


def prefect_env(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment every process needs to talk to this instance's Prefect, never ~/.prefect.

    `environ` (default: this process's) is read only for the server's auth string."""
    environ = os.environ if environ is None else environ
    env = {
        "PREFECT_HOME": str(settings.dirs.prefect_home),
        "PREFECT_API_URL": settings.prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        # A database error that makes a client retry (a 503, seconds lost) goes to
        # prefect.log with its traceback instead of being filtered out. On SQLite
        # arrivals/prefect_server.py prevents the usual one.
        "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",
        "PREFECT_WORKER_QUERY_SECONDS": str(settings.services.worker_query_seconds),
        "PREFECT_RUNNER_POLL_FREQUENCY": str(max(1, int(settings.services.worker_query_seconds))),
        # A flow run says it is alive this often (Prefect's minimum; its default is 180 s):
        # automations/crash_silent_runs.yaml marks one Crashed after 3 missed beats.
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(FLOW_HEARTBEAT_SECONDS),
    }
    auth = environ.get("PREFECT_SERVER_API_AUTH_STRING")
    if auth:
        env["PREFECT_API_AUTH_STRING"] = auth  # what clients send to an authed server
    if settings.scaled:
        env.update(_scale_env(settings))
    return env


def _scale_env(settings: Settings) -> dict[str, str]:
    """PostgreSQL for Prefect's database, Redis for its messaging, ordering, leases and docket."""
    scale = settings.scale
    return {
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": scale.database_url(
            scale.prefect_database, "asyncpg"
        ),
        # Migrations run once, before the replicas start (they would race).
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
        "PREFECT_MESSAGING_BROKER": "prefect_redis.messaging",
        "PREFECT_MESSAGING_CACHE": "prefect_redis.messaging",
        "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING": "prefect_redis.ordering",
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect_redis.lease_storage",
        "PREFECT_REDIS_MESSAGING_HOST": scale.redis_host,
        "PREFECT_REDIS_MESSAGING_PORT": str(scale.redis_port),
        "PREFECT_REDIS_MESSAGING_DB": str(scale.redis_db),
        "PREFECT_SERVER_DOCKET_URL": (
            f"redis://{scale.redis_host}:{scale.redis_port}/{scale.docket_redis_db}"
        ),
    }


def child_env(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The full environment of a service: `environ` (default: ours) + Prefect's + this home's."""
    environ = os.environ if environ is None else environ
    env = dict(environ)
    env.update(prefect_env(settings, environ))
    env["ARRIVALS_HOME"] = str(settings.home)
    env["ARRIVALS_CONFIG"] = str(settings.config_file)
    env["ARRIVALS_PREFECT_PORT"] = str(settings.services.prefect_port)
    env["ARRIVALS_MLFLOW_PORT"] = str(settings.services.mlflow_port)
    env["ARRIVALS_SERVE_PORT"] = str(settings.services.serve_port)
    env["ARRIVALS_PROFILE"] = settings.profile
    env["MLFLOW_TRACKING_URI"] = settings.mlflow_url
    # The machine is offline and users did not opt in: no telemetry from any service.
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "true"
    return env


def replica_env(settings: Settings, env: Mapping[str, str], replica: int) -> dict[str, str]:
    """A client's environment `env`, pointed at one API replica (spreads the load)."""
    return {**env, "PREFECT_API_URL": replica_api_url(settings, replica)}
