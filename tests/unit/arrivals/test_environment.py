"""What the stack's processes are given: API replicas, environments, the engine socket."""

from __future__ import annotations

from pathlib import Path

import pytest

from arrivals.environment import (
    AF_UNIX_PATH_MAX,
    child_env,
    mlflow_allowed_hosts,
    prefect_env,
    prefect_ports,
    replica_api_url,
    replica_env,
    socket_path_fits,
    warm_engine_socket,
)
from shared.runtime_settings import ScaleSettings
from shared.settings import Settings

REDIS_KEYS = (
    "PREFECT_MESSAGING_BROKER",
    "PREFECT_REDIS_MESSAGING_HOST",
    "PREFECT_SERVER_DOCKET_URL",
)


def scaled(settings: Settings, **scale: object) -> Settings:
    """The same settings in the scale profile, with `scale` overrides."""
    return settings.model_copy(update={"profile": "scale", "scale": ScaleSettings(**scale)})


def test_each_replica_gets_its_own_api_and_keeps_everything_else(settings: Settings) -> None:
    first = settings.services.prefect_port
    three = scaled(settings, api_replicas=3)
    assert prefect_ports(three) == [first, first + 1, first + 2]
    base = {"KEEP": "me", "PREFECT_API_URL": "http://elsewhere/api"}
    env = replica_env(three, base, 1)
    assert env == {"KEEP": "me", "PREFECT_API_URL": f"http://127.0.0.1:{first + 1}/api"}
    assert base["PREFECT_API_URL"] == "http://elsewhere/api", "the given env is not changed"
    # An index past the last replica wraps around: clients spread over the replicas.
    assert replica_api_url(three, 3) == replica_api_url(three, 0) == three.prefect_api_url


def test_the_embedded_profile_has_one_api_whatever_scale_says(settings: Settings) -> None:
    assert settings.scale.api_replicas > 1  # the scale section is there, but not in use
    assert prefect_ports(settings) == [settings.services.prefect_port]
    assert replica_api_url(settings, 1) == settings.prefect_api_url
    assert settings.prefect_ui_url + "/api" == settings.prefect_api_url


def test_the_scale_profile_points_prefect_at_redis_and_postgresql(settings: Settings) -> None:
    env = prefect_env(
        scaled(settings, redis_host="cache.lan", redis_port=6380, redis_db=3, docket_redis_db=4),
        environ={},
    )
    assert env["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"
    assert env["PREFECT_REDIS_MESSAGING_HOST"] == "cache.lan"
    assert env["PREFECT_REDIS_MESSAGING_PORT"] == "6380"
    assert env["PREFECT_REDIS_MESSAGING_DB"] == "3"
    assert env["PREFECT_SERVER_DOCKET_URL"] == "redis://cache.lan:6380/4"
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == (
        "postgresql+asyncpg://postgres@127.0.0.1:5432/arrivals_prefect"
    )
    assert env["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"
    embedded = prefect_env(settings, environ={})
    assert not [key for key in REDIS_KEYS if key in embedded], "SQLite needs no Redis"
    assert "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in embedded


def test_a_service_inherits_the_environment_and_gets_this_homes_settings(
    settings: Settings,
) -> None:
    inherited = {"PATH": "/bin", "PREFECT_API_URL": "http://stale:1/api", "ARRIVALS_HOME": "/x"}
    env = child_env(settings, inherited)
    assert env["PATH"] == "/bin"
    assert env["PREFECT_API_URL"] == settings.prefect_api_url
    assert env["PREFECT_HOME"] == str(settings.dirs.prefect_home)
    assert env["ARRIVALS_HOME"] == str(settings.home)
    assert env["ARRIVALS_CONFIG"] == str(settings.config_file)
    assert env["ARRIVALS_PROFILE"] == "embedded"
    assert env["MLFLOW_TRACKING_URI"] == settings.mlflow_url
    assert "PREFECT_API_AUTH_STRING" not in env, "no auth string without a server secret"


def test_clients_send_the_servers_auth_string(settings: Settings) -> None:
    env = child_env(settings, {"PREFECT_SERVER_API_AUTH_STRING": "admin:s3cret"})
    assert env["PREFECT_API_AUTH_STRING"] == "admin:s3cret"


def test_a_socket_path_fits_only_below_the_unix_limit(tmp_path: Path) -> None:
    longest = "/" + "a" * (AF_UNIX_PATH_MAX - 2)  # 107 bytes and the NUL: 108
    assert socket_path_fits(Path(longest))
    assert not socket_path_fits(Path(longest + "a"))
    assert not socket_path_fits(Path("/" + "é" * 54)), "bytes count, not characters"


@pytest.mark.parametrize(
    ("home_name", "warm_start", "warm"),
    [("home", True, True), ("home", False, False), ("d" * 120, True, False)],
    ids=["on", "switched-off", "socket-path-too-long"],
)
def test_warm_start_needs_the_switch_and_a_socket_path_that_fits(
    settings: Settings, tmp_path: Path, home_name: str, warm_start: bool, warm: bool
) -> None:
    chosen = settings.model_copy(
        update={
            "paths": settings.paths.model_copy(update={"home": tmp_path / home_name}),
            "services": settings.services.model_copy(update={"warm_start": warm_start}),
        }
    )
    expected = tmp_path / home_name / "run" / "engine.sock" if warm else None
    assert warm_engine_socket(chosen) == expected


def exposed(settings: Settings, **services: object) -> Settings:
    """The same settings with `services` overrides (exposure on)."""
    changed = settings.services.model_copy(update={"expose": True, **services})
    return settings.model_copy(update={"services": changed})


def test_mlflow_allows_the_configured_names_and_this_machines_own_clients(
    settings: Settings,
) -> None:
    wildcard = exposed(settings, host="0.0.0.0", allowed_hosts=["box.lan:*"], mlflow_port=5123)
    # The worker and `arrivals status` reach MLflow at its loopback URL: refused (403) if missing.
    assert mlflow_allowed_hosts(wildcard) == ["box.lan:*", "127.0.0.1:5123", "localhost:5123"]
    assert wildcard.mlflow_url == "http://127.0.0.1:5123"
    lan = exposed(settings, host="10.1.2.3", allowed_hosts=["10.1.2.3:5000"], mlflow_port=5000)
    assert mlflow_allowed_hosts(lan) == ["10.1.2.3:5000", "127.0.0.1:5000", "localhost:5000"]
