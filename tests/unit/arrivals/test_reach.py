"""`arrivals.reach`: which service a command needs is down, said in one line; on real sockets."""

from __future__ import annotations

import httpx
import pytest

from arrivals.harness import free_ports
from arrivals.reach import (
    MLFLOW,
    PREFECT,
    WORKER,
    ServiceUnreachable,
    prefect_calls,
    require,
)
from shared.settings import Settings, load_settings
from tests.support.fake_http import MLFLOW_ROUTES, fake_service, prefect_routes


def settings_on(monkeypatch: pytest.MonkeyPatch, prefect: int, mlflow: int) -> Settings:
    monkeypatch.setenv("ARRIVALS_PREFECT_PORT", str(prefect))
    monkeypatch.setenv("ARRIVALS_MLFLOW_PORT", str(mlflow))
    return load_settings()


def test_a_closed_prefect_port_is_named_with_how_to_start_it(monkeypatch) -> None:
    settings = settings_on(monkeypatch, free_ports(), free_ports())
    with pytest.raises(ServiceUnreachable) as raised:
        require(settings, PREFECT, MLFLOW)
    message = str(raised.value)
    assert message == (
        f"Prefect is not running at {settings.prefect_api_url}: "
        "start the stack with `arrivals up --detach`"
    )
    assert raised.value.service == PREFECT and "\n" not in message


def test_mlflow_is_checked_after_prefect_answers(monkeypatch) -> None:
    with fake_service(prefect_routes("arrivals")) as prefect:
        settings = settings_on(monkeypatch, prefect.port, free_ports())
        with pytest.raises(ServiceUnreachable) as raised:
            require(settings, PREFECT, MLFLOW)
    assert str(raised.value).startswith(f"MLflow is not running at {settings.mlflow_url}: ")
    assert prefect.requests == [("GET", "/api/health")]


def test_a_pool_with_no_online_worker_is_refused(monkeypatch) -> None:
    with fake_service(prefect_routes("arrivals", worker_status="OFFLINE")) as prefect:
        settings = settings_on(monkeypatch, prefect.port, free_ports())
        with pytest.raises(ServiceUnreachable) as raised:
            require(settings, PREFECT, WORKER)
    assert raised.value.service == WORKER
    assert "no worker polls the work pool 'arrivals'" in str(raised.value)


def test_all_services_there_passes_and_asks_each_once(monkeypatch) -> None:
    with (
        fake_service(prefect_routes("arrivals")) as prefect,
        fake_service(MLFLOW_ROUTES) as mlflow,
    ):
        settings = settings_on(monkeypatch, prefect.port, mlflow.port)
        require(settings, PREFECT, WORKER, MLFLOW)
    assert prefect.requests == [
        ("GET", "/api/health"),
        ("POST", "/api/work_pools/arrivals/workers/filter"),
    ]
    assert mlflow.requests == [("GET", "/health")]


def test_a_connection_that_fails_midway_becomes_the_one_line(monkeypatch) -> None:
    settings = settings_on(monkeypatch, free_ports(), free_ports())
    with pytest.raises(ServiceUnreachable) as raised, prefect_calls(settings):
        httpx.get(f"{settings.prefect_api_url}/flow_runs/filter", timeout=2)
    assert str(raised.value).startswith("Prefect is not running at ")
    assert isinstance(raised.value.__cause__, httpx.ConnectError)


def test_a_timeout_is_not_called_not_running(monkeypatch) -> None:
    settings = settings_on(monkeypatch, free_ports(), free_ports())
    with pytest.raises(ServiceUnreachable) as raised, prefect_calls(settings):
        raise httpx.ReadTimeout("timed out")
    assert "did not answer" in str(raised.value) and "ReadTimeout" in str(raised.value)


def test_then_adds_what_to_do_once_it_is_back() -> None:
    error = ServiceUnreachable("Prefect is not running at X: start it", service=PREFECT)
    later = error.then("run it again")
    assert str(later) == "Prefect is not running at X: start it; then run it again"
    assert later.service == PREFECT
