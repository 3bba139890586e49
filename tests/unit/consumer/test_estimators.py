"""model.params checked by scikit-learn itself, and params.yaml's examples, one per kind."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from consumer.estimators import (
    CLASSIFIERS,
    InvalidModelParams,
    build_classifier,
    check_model,
    params_problem,
)
from consumer.training import build_pipeline, train_and_evaluate
from shared.dataset import holdout_mask, read_source, training_pool
from shared.settings import DEFAULT_CONFIG, ModelSettings, Settings, SettingsError

PENGUINS_CONFIG = DEFAULT_CONFIG.parent / "examples" / "penguins" / "params.yaml"
EXAMPLE = re.compile(r"^\s*# example: (\{.*\})\s*$")


def _model(kind: str, **params: Any) -> ModelSettings:
    return ModelSettings(name="m", kind=kind, params=params)


def _examples(config: Path) -> list[dict[str, Any]]:
    """The `# example: {kind: ..., params: {...}}` comment lines of a params.yaml."""
    lines = config.read_text(encoding="utf-8").splitlines()
    return [yaml.safe_load(match[1]) for line in lines if (match := EXAMPLE.match(line))]


# -- the validator ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        pytest.param(
            _model("logistic_regression", C=1.0, n_estimators=200),
            "model.params.n_estimators: not a parameter of LogisticRegression",
            id="unknown-key",
        ),
        pytest.param(
            _model("logistic_regression", C="high"),
            "model.params.C: must be a float in the range (0.0, inf]. Got 'high' instead.",
            id="string-for-float",
        ),
        pytest.param(
            _model("random_forest", n_estimators=200.5),
            "model.params.n_estimators: must be an int in the range [1, inf). Got 200.5 instead.",
            id="float-for-int",
        ),
        pytest.param(
            _model("random_forest", n_estimators=0),
            "model.params.n_estimators: must be an int in the range [1, inf). Got 0 instead.",
            id="out-of-range",
        ),
        pytest.param(
            _model("hist_gradient_boosting", max_iter=100, loss="hinge"),
            "model.params.loss: must be a str among",
            id="unknown-option",
        ),
    ],
)
def test_a_refused_key_or_value_is_one_line_naming_it(model: ModelSettings, expected: str) -> None:
    problem = params_problem(model)
    assert problem is not None
    assert problem.startswith(expected), problem
    assert "\n" not in problem


def test_only_the_refused_key_is_named() -> None:
    """Valid keys before it do not hide it; the first refused one is reported."""
    problem = params_problem(_model("random_forest", max_depth=6, n_jobs=2, min_samples_leaf=-1))
    assert problem is not None and problem.startswith("model.params.min_samples_leaf: ")


@pytest.mark.parametrize(
    ("kind", "params", "estimator"),
    [
        (
            "random_forest",
            {"n_estimators": 20, "max_depth": 6, "n_jobs": 2},
            RandomForestClassifier,
        ),
        ("logistic_regression", {"C": 0.5, "max_iter": 1000}, LogisticRegression),
        (
            "hist_gradient_boosting",
            {"max_iter": 50, "learning_rate": 0.1},
            HistGradientBoostingClassifier,
        ),
    ],
)
def test_each_kind_builds_with_its_params_and_seed(
    kind: str, params: dict[str, Any], estimator: type
) -> None:
    model = ModelSettings(name="m", kind=kind, params=params, random_state=11)
    assert params_problem(model) is None
    classifier = build_classifier(model)
    assert type(classifier) is estimator
    assert classifier.get_params() | params == classifier.get_params()
    assert classifier.random_state == 11


def test_build_refuses_with_the_key_instead_of_sklearns_type_error() -> None:
    """ModelSettings made in code skip load_settings' name check: building still names it."""
    with pytest.raises(InvalidModelParams, match=r"^model\.params\.random_state: "):
        build_classifier(_model("logistic_regression", random_state=1))
    with pytest.raises(InvalidModelParams, match=r"^model\.params\.max_depth: .*LogisticRegr"):
        build_classifier(_model("logistic_regression", max_depth=3))


def test_a_training_refuses_with_the_key(settings: Settings) -> None:
    """A retrain builds through build_classifier: one line naming the key, not a TypeError."""
    model = _model("logistic_regression", C=1.0, max_depth=3)
    with pytest.raises(InvalidModelParams, match=r"^model\.params\.max_depth: not a param"):
        build_pipeline(model, settings.dataset)


def test_check_model_names_the_config_file(settings: Settings) -> None:
    check_model(settings)  # the shipped params pass
    bad = settings.model_copy(update={"model": _model("random_forest", max_depth="deep")})
    with pytest.raises(SettingsError) as info:
        check_model(bad)
    assert str(info.value).startswith(f"{settings.config_file}: model.params.max_depth: ")


# -- params.yaml's examples: they cannot rot --------------------------------------------


@pytest.mark.parametrize("config", [DEFAULT_CONFIG, PENGUINS_CONFIG], ids=["tips", "penguins"])
def test_params_yaml_shows_one_valid_example_per_kind(config: Path) -> None:
    examples = _examples(config)
    assert sorted(example["kind"] for example in examples) == sorted(CLASSIFIERS)
    for example in examples:
        assert set(example) == {"kind", "params"}, example
        assert example["params"], f"{example['kind']}: an example without params shows nothing"
        assert params_problem(ModelSettings(name="m", **example)) is None, example


def test_the_examples_train_on_tips(settings: Settings) -> None:
    """Working, not only valid: each example fits the shipped data and scores the holdout."""
    pool = training_pool(settings.dataset, settings.holdout)
    source = read_source(settings.dataset)
    holdout = source[holdout_mask(len(source), settings.holdout)].reset_index(drop=True)
    for example in _examples(DEFAULT_CONFIG):
        model = ModelSettings(name="m", **example)
        result = train_and_evaluate(pool, holdout, settings.dataset, model)
        assert 0.5 < result.metrics["roc_auc"] <= 1.0, (example, result.metrics)
        assert isinstance(result.pipeline[-1], CLASSIFIERS[example["kind"]])


def test_the_shipped_model_is_one_of_the_examples(settings: Settings) -> None:
    shipped = {"kind": settings.model.kind, "params": settings.model.params}
    assert shipped in _examples(DEFAULT_CONFIG)
