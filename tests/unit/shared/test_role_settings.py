"""Settings for roles on several hosts: where Prefect and MLflow are, a shared data folder."""

from __future__ import annotations

from pathlib import Path

from arrivals.environment import child_env, replica_api_url
from shared.runtime_settings import ScaleSettings
from shared.settings import load_settings


def test_by_default_clients_reach_the_servers_on_this_host(write_config, clean_env: Path) -> None:
    settings = load_settings(write_config())
    assert settings.prefect_api_url == "http://127.0.0.1:4200/api"
    assert settings.mlflow_url == "http://127.0.0.1:5000"
    assert settings.dirs.data == clean_env / "data"
    assert settings.dirs.inbox == clean_env / "data" / "inbox"


def test_another_hosts_prefect_and_mlflow_on_the_configured_ports(write_config) -> None:
    def elsewhere(params: dict) -> None:
        params["services"].update(prefect_host="a.example", mlflow_host="m.example")

    settings = load_settings(write_config(elsewhere))
    assert settings.prefect_api_url == "http://a.example:4200/api"
    assert settings.prefect_ui_url == "http://a.example:4200"
    assert settings.mlflow_url == "http://m.example:5000"
    env = child_env(settings, {})
    assert env["PREFECT_API_URL"] == "http://a.example:4200/api"  # what the worker is given
    assert env["MLFLOW_TRACKING_URI"] == "http://m.example:5000"  # and each retrain
    scale = settings.model_copy(update={"profile": "scale", "scale": ScaleSettings(api_replicas=2)})
    assert replica_api_url(scale, 1) == "http://a.example:4201/api"


def test_a_shared_data_folder_holds_the_inbox(write_config, tmp_path: Path, clean_env) -> None:
    shared = tmp_path / "nfs" / "arrivals-data"

    def absolute(params: dict) -> None:
        params["paths"]["data"] = str(shared)

    settings = load_settings(write_config(absolute))
    assert settings.dirs.inbox == shared / "inbox"
    assert settings.dirs.accepted == shared / "accepted"
    assert settings.dirs.logs == clean_env / "logs"  # the rest stays in the home

    def relative(params: dict) -> None:
        params["paths"]["data"] = "../shared-data"

    assert load_settings(write_config(relative)).dirs.quarantine == (
        clean_env.parent / "shared-data" / "quarantine"
    )
