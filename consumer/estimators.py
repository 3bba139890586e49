"""The classifier of each `model.kind`, built only from params scikit-learn accepts.

Imports scikit-learn but not pandas: `arrivals up` checks model.params with it before any
service starts, and every training builds its classifier through `build_classifier`.
"""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from shared.model_params import unknown_param
from shared.settings import ModelSettings, Settings, SettingsError

CLASSIFIERS: dict[str, type[BaseEstimator]] = {
    "random_forest": RandomForestClassifier,
    "logistic_regression": LogisticRegression,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
}


class InvalidModelParams(ValueError):
    """model.params holds a key or value the estimator refuses; the message names the key."""


def params_problem(model: ModelSettings) -> str | None:
    """`model.params.<key>: <why>` for the first key or value scikit-learn refuses; else None."""
    unknown = unknown_param(model.kind, model.params)
    if unknown is not None:
        return unknown
    estimator = CLASSIFIERS[model.kind]
    for key, value in model.params.items():
        try:
            # One key at a time, so the message can name it. `_validate_params` is the check
            # fit runs first (types and ranges); combinations such as penalty vs solver are
            # only checked by fit itself.
            estimator(**{key: value})._validate_params()
        except (TypeError, ValueError) as error:  # sklearn's InvalidParameterError is both
            return f"model.params.{key}: {_reason(error, key, estimator.__name__)}"
    return None


def _reason(error: Exception, key: str, class_name: str) -> str:
    """sklearn's message on one line, without repeating the key and class it names."""
    text = " ".join(str(error).split())
    return text.removeprefix(f"The {key!r} parameter of {class_name} ")


def check_model(settings: Settings) -> None:
    """Raise a one-line SettingsError naming the key when scikit-learn refuses model.params."""
    problem = params_problem(settings.model)
    if problem is not None:
        raise SettingsError(f"{settings.config_file}: {problem}")


def build_classifier(model: ModelSettings) -> BaseEstimator:
    """The configured, unfitted classifier; InvalidModelParams instead of sklearn's TypeError."""
    problem = params_problem(model)
    if problem is not None:
        raise InvalidModelParams(problem)
    return CLASSIFIERS[model.kind](**model.params, random_state=model.random_state)
