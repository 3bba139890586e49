"""`retract` / `accept`: reach the services first, then change the ledger, then retrain; a
re-run finishes what an interrupted run started. `drop` refuses what the sensor would not take.

Prefect and MLflow are real HTTP servers on free ports (tests/support/fake_http.py) or
closed ports; only the retrain run itself is stood in for.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arrivals import cli, ledger_commands
from arrivals.harness import free_ports
from arrivals.reach import PREFECT, ServiceUnreachable
from shared.fs import TEMP_SUFFIXES, is_candidate
from shared.ledger import Ledger
from shared.settings import Settings, load_settings
from tests.support.fake_http import MLFLOW_ROUTES, fake_service, prefect_routes
from tests.support.ledger_files import file_in_state


class Retrains:
    """Stands in for `run_retrain`: counts calls; `outcome` returns a code or raises."""

    def __init__(self) -> None:
        self.calls = 0
        self.outcome: Callable[[], int] = lambda: 0

    def __call__(self, settings: Settings) -> int:
        self.calls += 1
        return self.outcome()


@pytest.fixture
def retrains(monkeypatch: pytest.MonkeyPatch) -> Retrains:
    fake = Retrains()
    monkeypatch.setattr(ledger_commands, "run_retrain", fake)
    return fake


@pytest.fixture
def services_up(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Prefect (with an online worker) and MLflow answering on their ports."""
    with (
        fake_service(prefect_routes("arrivals")) as prefect,
        fake_service(MLFLOW_ROUTES) as mlflow,
    ):
        monkeypatch.setenv("ARRIVALS_PREFECT_PORT", str(prefect.port))
        monkeypatch.setenv("ARRIVALS_MLFLOW_PORT", str(mlflow.port))
        yield load_settings()


@pytest.fixture
def services_down(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("ARRIVALS_PREFECT_PORT", str(free_ports()))
    monkeypatch.setenv("ARRIVALS_MLFLOW_PORT", str(free_ports()))
    return load_settings()


def ledger_of(settings: Settings) -> Ledger:
    return Ledger(settings.ledger_url)


def state_of(settings: Settings, name: str) -> str:
    ledger = ledger_of(settings)
    try:
        record = ledger.find(name)
        assert record is not None
        return record.state
    finally:
        ledger.close()


def with_file(settings: Settings, name: str, state: str, version: str | None = "1") -> None:
    ledger = ledger_of(settings)
    try:
        file_in_state(ledger, name, state, version=version)
    finally:
        ledger.close()


def retract(settings: Settings, name: str) -> int:
    args = argparse.Namespace(file=name, reason="labels inverted")
    return ledger_commands.cmd_retract(settings, args)


def accept(settings: Settings, name: str) -> int:
    args = argparse.Namespace(file=name, reason="checked by hand")
    return ledger_commands.cmd_accept(settings, args)


# -- retract ----------------------------------------------------------------------------------
def test_retract_while_prefect_is_down_changes_nothing(services_down, retrains) -> None:
    with_file(services_down, "a.csv", "trained")
    with pytest.raises(ServiceUnreachable) as raised:
        retract(services_down, "a.csv")
    assert raised.value.service == PREFECT
    assert state_of(services_down, "a.csv") == "trained", "marked before Prefect answered"
    assert retrains.calls == 0


def test_retract_marks_then_retrains(services_up, retrains) -> None:
    with_file(services_up, "a.csv", "trained")
    assert retract(services_up, "a.csv") == 0
    assert state_of(services_up, "a.csv") == "retracted"
    assert retrains.calls == 1


def test_prefect_lost_after_marking_says_to_run_it_again_which_retrains(
    services_up, retrains
) -> None:
    with_file(services_up, "a.csv", "trained")

    def prefect_went_away() -> int:
        raise ServiceUnreachable("Prefect is not running at X: start it", service=PREFECT)

    retrains.outcome = prefect_went_away
    with pytest.raises(ServiceUnreachable) as raised:
        retract(services_up, "a.csv")
    assert str(raised.value).endswith(
        "then `arrivals retract a.csv` again retrains (the file stays retracted)"
    )
    assert state_of(services_up, "a.csv") == "retracted"

    retrains.outcome = lambda: 0
    assert retract(services_up, "a.csv") == 0, "not 'nothing to retract'"
    assert retrains.calls == 2


def test_a_failed_retrain_after_retracting_is_retried_by_a_rerun(
    services_up, retrains, caplog
) -> None:
    with_file(services_up, "a.csv", "suspect")
    retrains.outcome = lambda: 1
    with caplog.at_level(logging.INFO, logger="arrivals"):
        assert retract(services_up, "a.csv") == 1
        retrains.outcome = lambda: 0
        assert retract(services_up, "a.csv") == 0
    assert retrains.calls == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("did not end well; `arrivals retract a.csv` again retrains" in m for m in messages)
    assert any("a.csv was retracted already" in m for m in messages)


def test_retract_of_a_pending_file_is_refused_without_a_retrain(services_up, retrains) -> None:
    with_file(services_up, "a.csv", "announced")
    assert retract(services_up, "a.csv") == 2
    assert state_of(services_up, "a.csv") == "announced"
    assert retrains.calls == 0


def test_retract_of_an_unknown_file_needs_no_service(services_down, retrains) -> None:
    assert retract(services_down, "nope.csv") == 2
    assert retrains.calls == 0


# -- accept -----------------------------------------------------------------------------------
def test_accept_while_prefect_is_down_leaves_the_suspect_alone(services_down, retrains) -> None:
    with_file(services_down, "s.csv", "suspect")
    with pytest.raises(ServiceUnreachable):
        accept(services_down, "s.csv")
    assert state_of(services_down, "s.csv") == "suspect"


def test_accept_rerun_retrains_an_accepted_file_no_version_has(services_up, retrains) -> None:
    with_file(services_up, "s.csv", "suspect")
    retrains.outcome = lambda: 1  # the retrain after the accept failed
    assert accept(services_up, "s.csv") == 1
    assert state_of(services_up, "s.csv") == "trained"
    retrains.outcome = lambda: 0
    assert accept(services_up, "s.csv") == 0
    assert retrains.calls == 2


def test_accept_of_a_file_already_in_a_version_is_refused(services_up, retrains) -> None:
    with_file(services_up, "t.csv", "trained", version="3")
    assert accept(services_up, "t.csv") == 2
    assert retrains.calls == 0


# -- drop -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    [
        "week.csv",
        "week.CSV",
        "week.csv.gz",
        ".week.csv",
        "~$week.csv",
        *(f"week.csv{suffix}" for suffix in TEMP_SUFFIXES),
        "report.json",
        "week.csv.zip",
        "week",
    ],
)
def test_drop_refuses_exactly_what_the_sensor_would_not_train(name: str) -> None:
    refusal = ledger_commands.drop_refusal(name)
    assert (refusal is None) == is_candidate(name), refusal


def test_drop_says_why_a_temp_name_or_a_non_csv_is_refused() -> None:
    temp = ledger_commands.drop_refusal("week.csv.part")
    assert temp is not None and "sensor ignores" in temp and "rename it" in temp
    other = ledger_commands.drop_refusal("report.json")
    assert other is not None
    assert other.startswith("not a CSV: report.json") and "would quarantine it" in other


@pytest.mark.parametrize("name", [".hidden.csv", "notes.txt"])
def test_cli_drop_refuses_and_leaves_the_inbox_empty(
    settings: Settings, tmp_path: Path, caplog, name: str
) -> None:
    source = tmp_path / name
    source.write_text("total_bill,tip\n10,1\n")
    with caplog.at_level(logging.INFO, logger="arrivals"):
        assert cli.main(["drop", str(source)]) == 2
    (line,) = [r for r in caplog.records if r.name == "arrivals"]
    assert line.levelno == logging.ERROR and line.exc_info is None
    inbox = settings.dirs.inbox
    assert not inbox.exists() or not any(inbox.iterdir())


def test_cli_drop_still_copies_a_csv(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "week.csv"
    source.write_text("total_bill,tip\n10,1\n")
    assert cli.main(["drop", str(source)]) == 0
    assert (settings.dirs.inbox / "week.csv").read_text() == source.read_text()
