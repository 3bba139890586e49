"""params.yaml + environment -> Settings, and one-line errors that name the key."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arrivals.environment import child_env
from shared.settings import DEFAULT_CONFIG, SettingsError, load_settings
from tests.support.data import SOURCE_CSV


def _one_line_error(config: Path | None = None) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    message = str(info.value)
    assert message.strip(), "the error must say something"
    assert "\n" not in message.strip(), f"error is not one line: {message!r}"
    return message


# -- the shipped file ---------------------------------------------------------------------


def test_shipped_params_load(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.config_file == DEFAULT_CONFIG.resolve()
    assert settings.automation.cron_schedule == "*/2 * * * *"
    assert settings.automation.max_batches == 8
    assert settings.dataset.source.is_absolute()
    assert settings.dataset.source.is_file()
    assert settings.dataset.source == SOURCE_CSV.resolve()
    # Every feature and every label input is a declared column.
    for column in [*settings.dataset.features.all, *settings.dataset.label.source_columns()]:
        assert column in settings.dataset.columns


def test_arrivals_config_env_selects_the_file(
    monkeypatch: pytest.MonkeyPatch, write_config: Callable[..., Path]
) -> None:
    config = write_config(lambda p: p["automation"].update(max_batches=3))
    monkeypatch.setenv("ARRIVALS_CONFIG", str(config))
    settings = load_settings()
    assert settings.config_file == config.resolve()
    assert settings.automation.max_batches == 3


def test_explicit_config_argument_wins_over_env(
    monkeypatch: pytest.MonkeyPatch, write_config: Callable[..., Path]
) -> None:
    from_env = write_config(lambda p: p["automation"].update(max_batches=3))
    explicit = write_config(lambda p: p["automation"].update(max_batches=5))
    monkeypatch.setenv("ARRIVALS_CONFIG", str(from_env))
    assert load_settings(explicit).automation.max_batches == 5


# -- environment overrides ----------------------------------------------------------------


def test_home_from_env_holds_every_runtime_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("ARRIVALS_HOME", str(home))
    settings = load_settings()
    assert settings.home == home.resolve()
    dirs = settings.dirs
    for path in (dirs.inbox, dirs.archive, dirs.quarantine, dirs.ledger, dirs.prefect_home):
        assert path.is_relative_to(home)
    assert settings.ledger_url == f"sqlite:///{home.resolve() / 'ledger.db'}"
    assert not home.exists(), "loading settings must not create folders"
    dirs.ensure()
    assert dirs.inbox.is_dir() and dirs.quarantine.is_dir() and dirs.models.is_dir()


def test_relative_home_from_env_resolves_against_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARRIVALS_HOME", "rel-home")
    assert load_settings().home == (tmp_path / "rel-home").resolve()


def test_without_env_home_is_relative_to_the_config_file(
    monkeypatch: pytest.MonkeyPatch, write_config: Callable[..., Path]
) -> None:
    monkeypatch.delenv("ARRIVALS_HOME")
    config = write_config()
    settings = load_settings(config)
    assert settings.home == (config.parent / ".arrivals").resolve()


def test_relative_source_resolves_against_the_config_file(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    config = write_config(lambda p: p["dataset"].update(source="my-data/tips.csv"))
    (config.parent / "my-data").mkdir()
    shutil.copyfile(SOURCE_CSV, config.parent / "my-data" / "tips.csv")
    settings = load_settings(config)
    assert settings.dataset.source == (config.parent / "my-data" / "tips.csv").resolve()


def test_port_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARRIVALS_PREFECT_PORT", "14200")
    monkeypatch.setenv("ARRIVALS_MLFLOW_PORT", "15000")
    settings = load_settings()
    assert settings.services.prefect_port == 14200
    assert settings.services.mlflow_port == 15000
    assert ":14200/" in settings.prefect_api_url
    assert settings.mlflow_url.endswith(":15000")
    env = child_env(settings)
    assert env["ARRIVALS_PREFECT_PORT"] == "14200"
    assert env["ARRIVALS_MLFLOW_PORT"] == "15000"
    assert env["PREFECT_API_URL"] == settings.prefect_api_url
    assert env["ARRIVALS_HOME"] == str(settings.home)
    assert env["PREFECT_HOME"] == str(settings.dirs.prefect_home)


def test_empty_port_env_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = load_settings().services.prefect_port
    monkeypatch.setenv("ARRIVALS_PREFECT_PORT", "")
    assert load_settings().services.prefect_port == shipped


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("ARRIVALS_PREFECT_PORT", "abc", "ARRIVALS_PREFECT_PORT"),
        ("ARRIVALS_PREFECT_PORT", "42.5", "ARRIVALS_PREFECT_PORT"),
        ("ARRIVALS_MLFLOW_PORT", "port", "ARRIVALS_MLFLOW_PORT"),
        ("ARRIVALS_PREFECT_PORT", "70000", "services.prefect_port"),
        ("ARRIVALS_MLFLOW_PORT", "0", "services.mlflow_port"),
    ],
)
def test_bad_port_env_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert named in _one_line_error()


# -- bad params.yaml ----------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets `a.b.c` to `value`."""

    def change(params: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def change(params: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = params
        for key in parents:
            node = node[key]
        del node[last]

    return change


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        pytest.param(
            _set("dataset.colour", "red"), ["dataset.colour", "unknown key"], id="unknown"
        ),
        pytest.param(_set("surprise", {"a": 1}), ["surprise", "unknown key"], id="unknown-top"),
        pytest.param(
            _set("services.prefect_port", "abc"), ["services.prefect_port"], id="port-not-int"
        ),
        pytest.param(_set("services.mlflow_port", 99999), ["services.mlflow_port"], id="port-big"),
        pytest.param(
            _delete("dataset.label.threshold"),
            ["dataset.label", "threshold"],
            id="label-missing-threshold",
        ),
        pytest.param(
            _set("dataset.label.kind", "median_split"), ["dataset.label.kind"], id="label-kind"
        ),
        pytest.param(
            _set("dataset.features.numeric", ["total_bill", "colour"]),
            ["dataset", "'colour'", "not declared"],
            id="feature-undeclared",
        ),
        pytest.param(
            _set("dataset.columns.size.type", "integer"),
            ["dataset.columns.size.type"],
            id="column-type",
        ),
        pytest.param(
            _set("dataset.columns.tip.values", ["a"]),
            ["dataset.columns.tip", "values"],
            id="values-on-number",
        ),
        pytest.param(
            _set("automation.cron_schedule", "*/2 * * *"),
            ["automation", "cron_schedule"],
            id="cron-4-fields",
        ),
        pytest.param(
            _set("automation.cron_schedule", "every two minutes"),
            ["automation", "cron_schedule"],
            id="cron-words",
        ),
        pytest.param(_set("automation.max_batches", 0), ["automation.max_batches"], id="batches"),
        pytest.param(_set("holdout.fraction", 1.5), ["holdout.fraction"], id="fraction"),
        pytest.param(_set("model.kind", "svm"), ["model.kind"], id="model-kind"),
        pytest.param(_set("promotion.metric", "r2"), ["promotion.metric"], id="metric"),
        pytest.param(
            _set("promotion.min_improvement", -0.1), ["promotion.min_improvement"], id="improve"
        ),
        pytest.param(_set("sensor.settle_seconds", 0), ["sensor.settle_seconds"], id="settle"),
        pytest.param(_delete("model"), ["model"], id="missing-section"),
        pytest.param(
            _set("services.log_max_bytes", 1000), ["services.log_max_bytes"], id="log-too-small"
        ),
        pytest.param(_set("services.log_backups", 0), ["services.log_backups"], id="no-backups"),
        pytest.param(
            _set("services.log_backups", "many"), ["services.log_backups"], id="backups-not-int"
        ),
    ],
)
def test_bad_params_is_a_one_line_error_naming_the_key(
    write_config: Callable[..., Path], change: Callable[[dict[str, Any]], None], expected: list[str]
) -> None:
    config = write_config(change)
    message = _one_line_error(config)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert str(config.resolve()) in message, "the error names the file"


def test_service_logs_rotate_at_10_mib_keeping_5_by_default(
    write_config: Callable[..., Path],
) -> None:
    shipped = load_settings().services
    assert (shipped.log_max_bytes, shipped.log_backups) == (10 * 1024 * 1024, 5)
    # The same without the keys: params.yaml says what the code would do anyway.
    bare = load_settings(
        write_config(lambda p: [p["services"].pop(k) for k in ("log_max_bytes", "log_backups")])
    ).services
    assert (bare.log_max_bytes, bare.log_backups) == (10 * 1024 * 1024, 5)


def test_several_problems_are_counted_on_the_same_line(write_config: Callable[..., Path]) -> None:
    def change(params: dict[str, Any]) -> None:
        params["services"]["prefect_port"] = "abc"
        params["services"]["mlflow_port"] = "def"

    message = _one_line_error(write_config(change))
    assert "1 more problem" in message


@pytest.mark.parametrize(
    "section", ["services", "dataset", "sensor"], ids=["services", "dataset", "sensor"]
)
def test_section_that_is_not_a_mapping_is_a_settings_error(
    write_config: Callable[..., Path], section: str
) -> None:
    """`services: 5` is a bad params.yaml like any other: SettingsError naming the key."""
    config = write_config(_set(section, 5))
    assert section in _one_line_error(config)


def test_missing_file_is_a_settings_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    message = _one_line_error(missing)
    assert "not found" in message
    assert str(missing) in message


def test_invalid_yaml_is_a_one_line_settings_error(tmp_path: Path) -> None:
    config = tmp_path / "params.yaml"
    config.write_text("dataset: [unclosed\nmodel: {\n", encoding="utf-8")
    assert "YAML" in _one_line_error(config)


def test_top_level_list_is_a_settings_error(tmp_path: Path) -> None:
    config = tmp_path / "params.yaml"
    config.write_text("- a\n- b\n", encoding="utf-8")
    assert "mapping" in _one_line_error(config)


# -- other datasets -----------------------------------------------------------------------


def test_multiclass_column_label_validates(write_config: Callable[..., Path]) -> None:
    def change(params: dict[str, Any]) -> None:
        params["dataset"]["label"] = {"name": "weekday", "kind": "column", "column": "day"}
        params["dataset"]["features"]["categorical"] = ["sex", "smoker", "time"]

    settings = load_settings(write_config(change))
    assert settings.dataset.label.kind == "column"
    assert settings.dataset.label.source_columns() == ["day"]
    assert "day" not in settings.dataset.features.all


def test_column_label_cannot_also_be_a_feature(write_config: Callable[..., Path]) -> None:
    def change(params: dict[str, Any]) -> None:
        params["dataset"]["label"] = {"name": "weekday", "kind": "column", "column": "day"}

    message = _one_line_error(write_config(change))
    assert "dataset" in message and "'day'" in message


def test_above_label_needs_a_column(write_config: Callable[..., Path]) -> None:
    config = write_config(_set("dataset.label", {"name": "big", "kind": "above", "threshold": 3.0}))
    message = _one_line_error(config)
    assert "dataset.label" in message and "column" in message


def test_write_params_merges_nested_overrides_and_keeps_the_source_usable(tmp_path: Path) -> None:
    from arrivals.harness import write_params

    path = write_params(
        tmp_path / "elsewhere" / "params.yaml",
        {"automation": {"max_batches": 3}},
        {"sensor": {"rescan_seconds": 2}, "automation": {"cron_schedule": "0 0 1 1 *"}},
    )
    settings = load_settings(path)
    assert settings.automation.max_batches == 3  # an earlier override survives a later one
    assert settings.automation.cron_schedule == "0 0 1 1 *"
    assert settings.automation.batch_size == 22  # untouched keys keep the shipped value
    assert settings.sensor.rescan_seconds == 2
    assert settings.dataset.source.is_file()
