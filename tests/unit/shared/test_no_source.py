"""A config with no dataset.source: settings, a pinned holdout file, the optional producer."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from pathlib import Path

import prefect.deployments
import pytest
import yaml

from arrivals import cli, ledger_commands
from arrivals.harness import write_params
from arrivals.topology import PRODUCER_DEPLOYMENT, RETRAIN_DEPLOYMENT, deployment_specs
from shared.settings import SettingsError, load_settings


@pytest.fixture
def no_source(write_config: Callable[..., Path]) -> Path:
    return write_config(lambda p: p["dataset"].pop("source"))


@pytest.fixture
def producer_off(write_config: Callable[..., Path]) -> Path:
    return write_config(lambda p: p["automation"].update(producer=False))


@pytest.fixture
def no_deployment_runs(monkeypatch: pytest.MonkeyPatch) -> list:
    calls: list = []
    monkeypatch.setattr(prefect.deployments, "run_deployment", lambda *a, **k: calls.append((a, k)))
    monkeypatch.setattr(cli, "use_prefect_of", lambda settings: None)  # no env leaks out
    return calls


def test_the_source_is_optional_and_new_keys_have_defaults(no_source: Path) -> None:
    settings = load_settings(no_source)
    assert settings.dataset.source is None
    assert settings.holdout.file is None and settings.holdout.min_rows == 30
    assert settings.automation.producer is True
    settings.dirs.ensure()
    assert settings.dirs.holdout_rows.is_dir()
    assert settings.dirs.holdout_rows == settings.dirs.data / "holdout"


def test_a_holdout_file_resolves_beside_the_config(write_config, tmp_path: Path) -> None:
    config = write_config(lambda p: p["holdout"].update(file="eval/mine.csv"))
    (config.parent / "eval").mkdir()
    (config.parent / "eval" / "mine.csv").write_text("x\n1\n", encoding="utf-8")
    assert load_settings(config).holdout.file == (config.parent / "eval" / "mine.csv").resolve()


def test_a_missing_holdout_file_is_a_one_line_error_naming_the_key(write_config) -> None:
    config = write_config(lambda p: p["holdout"].update(file="nowhere.csv"))
    with pytest.raises(SettingsError) as error:
        load_settings(config)
    message = str(error.value)
    assert "holdout.file" in message and "nowhere.csv" in message and "\n" not in message


def test_min_rows_must_be_positive(write_config) -> None:
    with pytest.raises(SettingsError, match=r"holdout\.min_rows"):
        load_settings(write_config(lambda p: p["holdout"].update(min_rows=0)))


def test_write_params_keeps_a_config_without_source(tmp_path: Path) -> None:
    path = write_params(tmp_path / "p.yaml", {"dataset": {"source": None}})
    assert yaml.safe_load(path.read_text())["dataset"]["source"] is None
    assert load_settings(path).dataset.source is None


def test_the_producer_is_off_without_a_source_or_when_switched_off(
    settings, no_source: Path, producer_off: Path
) -> None:
    assert settings.producer_off_reason is None
    assert PRODUCER_DEPLOYMENT in {spec.full_name for spec in deployment_specs(settings)}
    for config, says in ((no_source, "dataset.source"), (producer_off, "automation.producer")):
        off = load_settings(config)
        assert says in off.producer_off_reason
        names = {spec.full_name for spec in deployment_specs(off)}
        assert names == {RETRAIN_DEPLOYMENT}, "the retrain stays, the producer goes"


@pytest.mark.parametrize(
    ("fixture", "says"),
    [("no_source", "dataset.source"), ("producer_off", "automation.producer is false")],
)
def test_drop_batch_explains_why_it_cannot_run(
    request, fixture: str, says: str, no_deployment_runs: list, caplog
) -> None:
    config = request.getfixturevalue(fixture)
    with caplog.at_level(logging.INFO, logger="arrivals"):
        code = cli.main(["--config", str(config), "drop", "--batch", "3"])
    assert code == 2
    assert no_deployment_runs == [], "nothing was asked of Prefect"
    (line,) = [r for r in caplog.records if r.name == "arrivals"]
    assert line.levelno == logging.ERROR and line.exc_info is None
    assert "Cannot produce batch 3" in line.getMessage() and says in line.getMessage()


def test_drop_batch_still_runs_the_producer_when_it_is_on(settings, monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(ledger_commands, "_run_producer", lambda s, batch: calls.append(batch) or 0)
    assert cli.main(["drop", "--batch", "2"]) == 0
    assert calls == [2]


def test_up_says_the_producer_is_off_and_why(no_source: Path, monkeypatch, caplog) -> None:
    from arrivals.stack import Stack

    monkeypatch.setattr(Stack, "up", lambda self, apply: {})
    monkeypatch.setattr(cli, "use_prefect_of", lambda settings: None)
    with caplog.at_level(logging.INFO, logger="arrivals"):
        assert cli.cmd_up(load_settings(no_source), argparse.Namespace(detach=True)) == 0
    lines = [r.getMessage() for r in caplog.records if "Producer" in r.getMessage()]
    assert lines == ["Producer:   off: params.yaml has no dataset.source to slice into batches"]


def test_up_says_nothing_about_a_producer_that_runs(settings, monkeypatch, caplog) -> None:
    from arrivals.stack import Stack

    monkeypatch.setattr(Stack, "up", lambda self, apply: {})
    monkeypatch.setattr(cli, "use_prefect_of", lambda settings: None)
    with caplog.at_level(logging.INFO, logger="arrivals"):
        assert cli.cmd_up(settings, argparse.Namespace(detach=True)) == 0
    assert not [r for r in caplog.records if "Producer" in r.getMessage()]


def test_status_works_without_a_source(no_source: Path, capsys) -> None:
    assert cli.main(["--config", str(no_source), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["files"]["pending"] == 0
    assert status["services"]["prefect"]["healthy"] is False
