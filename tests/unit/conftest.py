"""Shared fixtures for the unit tests: a clean environment, a fake clock, config writers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import DEFAULT_CONFIG, Settings, load_settings
from tests.support.data import SOURCE_CSV
from tests.support.fakes import FakeClock

ARRIVALS_ENV = ("ARRIVALS_HOME", "ARRIVALS_CONFIG", "ARRIVALS_PREFECT_PORT", "ARRIVALS_MLFLOW_PORT")


@pytest.fixture(scope="session", autouse=True)
def _prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect (imported lazily by some tests) must never touch ~/.prefect or a real server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
        patch.delenv("PREFECT_API_URL", raising=False)
        yield


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ARRIVALS_* variable leaks in from the caller; the home is always under tmp_path."""
    for name in ARRIVALS_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("ARRIVALS_HOME", str(home))
    return home


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def shipped_params() -> dict[str, Any]:
    """params.yaml as shipped, as a fresh dict each time."""
    return yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))


@pytest.fixture
def write_config(tmp_path: Path, shipped_params: dict[str, Any]) -> Callable[..., Path]:
    """Write a params.yaml into tmp_path: the shipped one, changed by `change(params)`."""
    counter = iter(range(1_000))

    def write(change: Callable[[dict[str, Any]], object] | None = None) -> Path:
        params = yaml.safe_load(yaml.safe_dump(shipped_params))  # deep copy
        params["dataset"]["source"] = str(SOURCE_CSV)
        if change is not None:
            change(params)
        path = tmp_path / "config" / f"params-{next(counter)}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture
def settings() -> Settings:
    """The shipped settings, home under tmp_path (see clean_env)."""
    return load_settings()
