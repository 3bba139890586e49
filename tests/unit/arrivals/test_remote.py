"""What a host sees of the roles other hosts run, and how `up` and `status` treat them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from arrivals import remote
from arrivals.harness import free_ports, write_params
from arrivals.roles import record_roles
from arrivals.stack import Stack, StackError
from arrivals.status import collect_status, render_status
from shared.events import SENSOR_HEARTBEAT
from shared.settings import Settings, load_settings

WORKERS_HOST = frozenset({"engine", "worker", "sensor"})


def answering(routes: dict[str, httpx.Response]) -> httpx.Client:
    """A client whose server answers `routes` (by path) and refuses everything else."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path in routes:
            return routes[request.url.path]
        raise httpx.ConnectError("refused", request=request)

    return httpx.Client(transport=httpx.MockTransport(handle))


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch) -> Settings:
    """Settings whose Prefect and MLflow ports nothing listens on, 1 s to start."""
    first = free_ports(2)
    monkeypatch.setenv("ARRIVALS_PREFECT_PORT", str(first))
    monkeypatch.setenv("ARRIVALS_MLFLOW_PORT", str(first + 1))
    config = write_params(
        tmp_path / "params.yaml",
        {"services": {"startup_timeout_seconds": 1}, "automation": {"producer": False}},
    )
    return load_settings(config)


def test_remote_entries_name_each_api_server_and_other_roles_once(settings: Settings) -> None:
    from shared.runtime_settings import ScaleSettings

    scale = settings.model_copy(
        update={"profile": "scale", "scale": ScaleSettings(api_replicas=3, workers=2)}
    )
    assert remote.remote_names(scale, frozenset({"mlflow", "engine", "sensor"})) == [
        ("prefect", "prefect"),
        ("prefect-2", "replicas"),
        ("prefect-3", "replicas"),
        ("prefect-services", "services"),
        ("worker", "worker"),
        ("serve", "serve"),
    ]


def test_a_remote_server_is_reachable_when_its_health_check_answers(settings: Settings) -> None:
    http = answering({"/api/health": httpx.Response(200, json=True)})
    seen = remote.probe(settings, http, "prefect", "prefect")
    assert (seen.reachable, seen.url) == (True, settings.prefect_ui_url)
    assert remote.probe(settings, http, "mlflow", "mlflow").reachable is False


def test_a_remote_worker_is_reachable_when_one_polls_the_pool(settings: Settings) -> None:
    path = f"/api/work_pools/{settings.services.work_pool}/workers/filter"
    online = [{"name": "arrivals-b-4200", "status": "ONLINE"}, {"status": "OFFLINE"}]
    seen = remote.probe(
        settings, answering({path: httpx.Response(200, json=online)}), "w", "worker"
    )
    assert (seen.reachable, seen.detail) == (True, "1 online in the work pool")
    offline = answering({path: httpx.Response(200, json=[{"status": "OFFLINE"}])})
    assert remote.probe(settings, offline, "worker", "worker").reachable is False
    no_pool = answering({path: httpx.Response(404, json={})})
    assert remote.probe(settings, no_pool, "worker", "worker").reachable is False
    assert remote.probe(settings, answering({}), "worker", "worker").reachable is None


def test_a_remote_sensor_is_reachable_when_its_heartbeat_arrived_lately(settings: Settings) -> None:
    asked = []

    def events(found: list) -> httpx.Client:
        def handle(request: httpx.Request) -> httpx.Response:
            asked.append(json.loads(request.content))
            return httpx.Response(200, json={"events": found})

        return httpx.Client(transport=httpx.MockTransport(handle))

    assert remote.probe(settings, events([{"id": "1"}]), "sensor", "sensor").reachable is True
    assert remote.probe(settings, events([]), "sensor", "sensor").reachable is False
    assert asked[0]["filter"]["event"] == {"name": [SENSOR_HEARTBEAT]}


@pytest.mark.parametrize("role", ["engine", "services"])
def test_what_cannot_be_asked_from_here_is_not_checked(settings: Settings, role: str) -> None:
    seen = remote.probe(settings, answering({}), role, role)
    assert (seen.reachable, remote.reach_word(seen.reachable)) == (None, "not checked")


def test_status_of_a_workers_host_shows_its_processes_and_the_remote_servers(
    nowhere: Settings,
) -> None:
    nowhere.dirs.run.mkdir(parents=True)
    record_roles(nowhere, WORKERS_HOST)  # as `up --only engine,worker,sensor` leaves it
    status = collect_status(nowhere, recent=0)
    services = status["services"]
    assert list(services) == ["engine", "worker", "sensor", "prefect", "mlflow", "serve"]
    assert "where" not in services["worker"]  # local: the contract's fields only
    assert services["prefect"] == {
        "healthy": False,
        "pid": None,
        "url": nowhere.prefect_ui_url,
        "where": "remote",
        "reachable": False,
        "detail": "",
    }
    text = render_status(status)
    assert "UNREACHABLE" in text
    down_line = next(line for line in text.splitlines() if line.startswith("down:"))
    assert "prefect" not in down_line and "worker" in down_line  # its own processes only


def test_up_on_a_workers_host_fails_naming_the_remote_prefect_and_starts_nothing(
    nowhere: Settings,
) -> None:
    applied = []
    with pytest.raises(StackError, match=f"Prefect at {nowhere.prefect_ui_url} did not answer"):
        Stack(nowhere, WORKERS_HOST).up(applied.append, applied=lambda s: False)
    assert applied == []
    assert sorted(p.name for p in nowhere.dirs.run.glob("*.pid")) == []
    assert nowhere.dirs.run.joinpath("roles").read_text() == "engine,worker,sensor\n"


class Recording(Stack):
    """A stack whose processes only leave a trace: what was started, applied, in order."""

    def __init__(self, settings: Settings, selected: frozenset[str]) -> None:
        super().__init__(settings, selected)
        self.trace: list[str] = []

    def pid(self, name: str) -> int | None:
        return None

    def start(self, name: str) -> None:
        self.trace.append(f"start {name}")

    def _wait(self, names: list[str], deadline: float) -> None:
        if names:
            self.trace.append(f"wait {','.join(names)}")

    def _wait_remote_prefect(self, deadline: float) -> None:
        self.trace.append("wait remote prefect")

    def statuses(self) -> dict:
        return {}


@pytest.mark.parametrize(("deployed", "applies"), [(True, False), (False, True)])
def test_a_workers_host_applies_only_what_nobody_applied(
    nowhere: Settings, deployed: bool, applies: bool
) -> None:
    stack = Recording(nowhere, WORKERS_HOST)
    stack.up(lambda s: stack.trace.append("apply"), applied=lambda s: deployed)
    expected = ["wait remote prefect", *(["apply"] if applies else [])]
    expected += ["start engine", "start worker", "start sensor", "wait engine,worker,sensor"]
    assert stack.trace == expected


def test_the_servers_host_always_applies_once_its_prefect_answers(nowhere: Settings) -> None:
    stack = Recording(nowhere, frozenset({"prefect", "mlflow"}))
    stack.up(lambda s: stack.trace.append("apply"), applied=lambda s: True)
    assert stack.trace == [
        "start prefect",
        "start mlflow",
        "wait prefect",
        "apply",
        "wait prefect,mlflow",
    ]
