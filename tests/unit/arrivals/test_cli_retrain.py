"""`arrivals retrain` / `retract`: a manual run waits its turn behind single flight."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import prefect.deployments
import pytest
from prefect.states import Cancelled, Completed, State

from arrivals import ledger_commands
from arrivals.topology import RETRAIN_DEPLOYMENT
from shared.settings import load_settings


@dataclass
class FakeDeployments:
    """`run_deployment` handing out `states` in turn and recording each call."""

    states: list[State] = field(default_factory=list)
    calls: list[tuple[str, dict]] = field(default_factory=list)

    def run_deployment(self, name: str, **kwargs) -> SimpleNamespace:
        self.calls.append((name, kwargs["parameters"]))
        return SimpleNamespace(name=f"run-{len(self.calls)}", state=self.states.pop(0))


@pytest.fixture
def deployments(monkeypatch: pytest.MonkeyPatch) -> FakeDeployments:
    fake = FakeDeployments()
    monkeypatch.setattr(prefect.deployments, "run_deployment", fake.run_deployment)
    monkeypatch.setattr(ledger_commands, "_wait_until_no_retrain_runs", lambda deadline: None)
    monkeypatch.setattr(
        ledger_commands, "use_prefect_of", lambda settings: None
    )  # no env leaks out
    return fake


def test_a_run_cancelled_by_single_flight_is_submitted_again(deployments) -> None:
    deployments.states += [Cancelled(message="Deployment concurrency limit reached."), Completed()]
    assert ledger_commands.run_retrain(load_settings()) == 0
    assert deployments.calls == [(RETRAIN_DEPLOYMENT, {"rebuild": True})] * 2


def test_a_run_cancelled_for_another_reason_is_reported(deployments) -> None:
    deployments.states += [Cancelled(message="Cancelled by a person in the UI")]
    assert ledger_commands.run_retrain(load_settings()) == 1
    assert len(deployments.calls) == 1
