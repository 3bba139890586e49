"""`arrivals status` over a real ledger with every service faked healthy (no servers)."""

from __future__ import annotations

import pytest

import arrivals.status as status_module
from arrivals.stack import ServiceStatus
from shared.settings import Settings

SERVICES = ("prefect", "mlflow", "engine", "worker", "sensor")


class HealthyStack:
    """Stands in for `arrivals.stack.Stack`: every service up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def statuses(self) -> dict[str, ServiceStatus]:
        return {name: ServiceStatus(name, 100 + i, True) for i, name in enumerate(SERVICES)}


def fake_healthy_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every service healthy, MLflow's champion asked of nobody."""
    monkeypatch.setattr(status_module, "Stack", HealthyStack)
    # MLflow is "healthy" but not there: the champion is not what --check judges.
    monkeypatch.setattr(status_module, "champion_from_mlflow", lambda settings, registry: None)
