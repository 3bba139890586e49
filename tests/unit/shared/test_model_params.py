"""model.params names, checked at load without scikit-learn, in step with scikit-learn's own."""

from __future__ import annotations

import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.model_params import ESTIMATOR_PARAMS, unknown_param
from shared.settings import ModelSettings, SettingsError, load_settings


def _model(kind: str, params: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        config["model"]["kind"] = kind
        config["model"]["params"] = params

    return change


def _error(config: Path) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(config)
    return str(info.value)


def test_the_listed_names_are_the_installed_estimators_parameters() -> None:
    """A scikit-learn upgrade that adds or drops a parameter fails here, not at a user's start."""
    from consumer.estimators import CLASSIFIERS

    assert set(ESTIMATOR_PARAMS) == set(CLASSIFIERS)
    for kind, (class_name, names) in ESTIMATOR_PARAMS.items():
        estimator = CLASSIFIERS[kind]
        assert estimator.__name__ == class_name
        assert names == set(estimator().get_params(deep=False)) - {"random_state"}, kind


def test_every_kind_the_settings_accept_has_its_names() -> None:
    kinds = typing.get_args(ModelSettings.model_fields["kind"].annotation)
    assert set(kinds) == set(ESTIMATOR_PARAMS)


def test_forest_params_on_logistic_regression_stop_the_load_with_one_line(
    write_config: Callable[..., Path],
) -> None:
    config = write_config(_model("logistic_regression", {"n_estimators": 200, "max_depth": 6}))
    message = _error(config)
    assert message == (
        f"{config.resolve()}: model.params.n_estimators: not a parameter of LogisticRegression"
    )


def test_a_misspelt_name_suggests_the_close_one(write_config: Callable[..., Path]) -> None:
    config = write_config(_model("hist_gradient_boosting", {"max_iters": 100}))
    assert _error(config).endswith(
        "model.params.max_iters: not a parameter of HistGradientBoostingClassifier "
        "(did you mean max_iter?)"
    )


def test_random_state_in_params_points_at_its_own_key(write_config: Callable[..., Path]) -> None:
    """build_pipeline passes model.random_state itself: a second one would be a TypeError."""
    config = write_config(_model("random_forest", {"random_state": 3}))
    assert _error(config).endswith("model.params.random_state: set model.random_state instead")


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("random_forest", {"n_estimators": 200, "max_depth": 6, "n_jobs": 2}),
        ("logistic_regression", {"C": 0.5, "max_iter": 1000, "solver": "lbfgs"}),
        ("hist_gradient_boosting", {"max_iter": 100, "learning_rate": 0.1}),
    ],
)
def test_each_kinds_own_params_load(
    write_config: Callable[..., Path], kind: str, params: dict[str, Any]
) -> None:
    settings = load_settings(write_config(_model(kind, params)))
    assert (settings.model.kind, settings.model.params) == (kind, params)


def test_no_params_is_no_problem() -> None:
    assert all(unknown_param(kind, {}) is None for kind in ESTIMATOR_PARAMS)
