"""`arrivals retrain` / `retract`: a manual run waits its turn behind single flight, and ends
by printing the version it made, its decision and the champion."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import prefect.deployments
import pytest
from prefect.states import Cancelled, Completed, Failed, State

from arrivals import ledger_commands, outcome
from arrivals.outcome import RunOutcome, Version
from arrivals.topology import RETRAIN_DEPLOYMENT
from shared.settings import load_settings


@dataclass
class FakeDeployments:
    """`run_deployment` handing out `states` in turn and recording each call."""

    states: list[State] = field(default_factory=list)
    calls: list[tuple[str, dict]] = field(default_factory=list)
    outcomes_read: list[str] = field(default_factory=list)

    def read_outcome(self, settings, run_id: str, run_name: str) -> RunOutcome:
        self.outcomes_read.append(run_id)
        decision = {"outcome": "promoted", "reason": "ROC AUC +0.05, CI above 0"}
        return RunOutcome(run_name, "http://ui", [Version("7", decision)], "7")

    def run_deployment(self, name: str, **kwargs) -> SimpleNamespace:
        self.calls.append((name, kwargs["parameters"]))
        number = len(self.calls)
        return SimpleNamespace(id=f"id-{number}", name=f"run-{number}", state=self.states.pop(0))


@pytest.fixture
def deployments(monkeypatch: pytest.MonkeyPatch) -> FakeDeployments:
    fake = FakeDeployments()
    monkeypatch.setattr(prefect.deployments, "run_deployment", fake.run_deployment)
    monkeypatch.setattr(ledger_commands, "_wait_until_no_retrain_runs", lambda deadline: None)
    monkeypatch.setattr(
        ledger_commands, "use_prefect_of", lambda settings: None
    )  # no env leaks out
    monkeypatch.setattr(ledger_commands, "require", lambda settings, *services: None)
    monkeypatch.setattr(outcome, "read_outcome", fake.read_outcome)
    return fake


def test_a_run_cancelled_by_single_flight_is_submitted_again(deployments) -> None:
    deployments.states += [Cancelled(message="Deployment concurrency limit reached."), Completed()]
    assert ledger_commands.run_retrain(load_settings()) == 0
    assert deployments.calls == [(RETRAIN_DEPLOYMENT, {"rebuild": True})] * 2


def test_a_run_cancelled_for_another_reason_is_reported(deployments) -> None:
    deployments.states += [Cancelled(message="Cancelled by a person in the UI")]
    assert ledger_commands.run_retrain(load_settings()) == 1
    assert len(deployments.calls) == 1


def test_a_completed_run_prints_its_version_decision_and_champion(deployments, capsys) -> None:
    deployments.states += [Completed()]
    assert ledger_commands.run_retrain(load_settings()) == 0
    assert deployments.outcomes_read == ["id-1"]
    assert capsys.readouterr().out.splitlines() == [
        "Version   arrivals-tips v7",
        "Decision  promoted: ROC AUC +0.05, CI above 0",
        "Champion  arrivals-tips v7",
    ]


def test_a_failed_run_prints_no_outcome(deployments, capsys) -> None:
    deployments.states += [Failed()]
    assert ledger_commands.run_retrain(load_settings()) == 1
    assert deployments.outcomes_read == [] and capsys.readouterr().out == ""
