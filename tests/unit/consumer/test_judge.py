"""The paired bootstrap's parts: metrics on weights, resampling, intervals (consumer.judge)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from consumer.judge import (
    MIN_CLUSTERS,
    LabelledRows,
    Scores,
    metric_value,
    paired_interval,
    prior_scores,
    resample_weights,
    value_interval,
)
from tests.support.simulate import draw

SKLEARN = {
    "roc_auc": lambda y, p: (
        roc_auc_score(y, p[:, 1]) if p.shape[1] == 2 else roc_auc_score(y, p, multi_class="ovr")
    ),
    "accuracy": lambda y, p: accuracy_score(y, p.argmax(axis=1)),
    "f1_macro": lambda y, p: f1_score(y, p.argmax(axis=1), average="macro"),
    "log_loss": lambda y, p: log_loss(y, p, labels=list(range(p.shape[1]))),
}


@pytest.mark.parametrize("metric", sorted(SKLEARN))
@pytest.mark.parametrize("classes", [2, 3])
def test_metrics_match_scikit_learn(metric: str, classes: int) -> None:
    rng = np.random.default_rng(classes)
    y = rng.integers(0, classes, 150)
    proba = rng.dirichlet(np.ones(classes), 150)
    proba[np.arange(150), y] += 0.4
    proba = np.round(proba / proba.sum(axis=1, keepdims=True), 2)  # rounding makes ties
    proba = proba / proba.sum(axis=1, keepdims=True)
    holdout = LabelledRows(y, [str(c) for c in range(classes)])
    assert metric_value(metric, holdout, Scores(proba)) == pytest.approx(
        SKLEARN[metric](y, proba), abs=1e-9
    )


def test_the_same_seed_gives_the_same_interval_and_another_seed_another() -> None:
    holdout, a, b = draw(np.random.default_rng(0), rows=100, auc_a=0.8, auc_b=0.78)
    settings = {"confidence": 0.95, "resamples": 1000}
    first = paired_interval("roc_auc", holdout, a, b, seed=1, **settings)
    assert first == paired_interval("roc_auc", holdout, a, b, seed=1, **settings)
    assert first.low != paired_interval("roc_auc", holdout, a, b, seed=2, **settings).low
    assert first.low < first.delta < first.high
    assert first.resamples == 1000
    assert first.mde == pytest.approx((1.959964 + 0.841621) * first.se, rel=1e-5)


def test_swapping_the_models_mirrors_the_interval() -> None:
    holdout, a, b = draw(np.random.default_rng(1), rows=100, auc_a=0.8, auc_b=0.78)
    ab = paired_interval("log_loss", holdout, a, b, confidence=0.9, resamples=1000, seed=0)
    ba = paired_interval("log_loss", holdout, b, a, confidence=0.9, resamples=1000, seed=0)
    assert ab.delta == pytest.approx(-ba.delta)
    assert ab.low == pytest.approx(-ba.high)


def test_lower_is_better_for_log_loss() -> None:
    y = np.array([0, 1] * 50)
    good = Scores(np.c_[np.where(y == 1, 0.2, 0.8), np.where(y == 1, 0.8, 0.2)])
    poor = Scores(np.full((100, 2), 0.5))
    holdout = LabelledRows(y, ["0", "1"])
    interval = paired_interval(
        "log_loss", holdout, good, poor, confidence=0.95, resamples=1000, seed=0
    )
    assert interval.delta > 0 and interval.low > 0  # positive = better, whatever the sense


def test_row_weights_sum_to_the_rows_and_files_are_drawn_whole() -> None:
    groups = np.repeat(np.arange(MIN_CLUSTERS + 2), 5)
    holdout = LabelledRows(np.zeros(len(groups), dtype=int), ["0", "1"], groups)
    (weights,) = list(resample_weights(holdout, 50, seed=0))
    assert weights.shape == (50, len(groups))
    for row in weights:  # every row of a file is drawn as often as its file
        per_file = row.reshape(-1, 5)
        assert (per_file == per_file[:, :1]).all()
    assert (weights.reshape(50, -1, 5)[:, :, 0].sum(axis=1) == MIN_CLUSTERS + 2).all()


def test_few_files_fall_back_to_rows() -> None:
    groups = np.repeat(np.arange(MIN_CLUSTERS - 1), 5)
    holdout = LabelledRows(np.zeros(len(groups), dtype=int), ["0", "1"], groups)
    assert holdout.clusters is None
    (weights,) = list(resample_weights(holdout, 20, seed=0))
    assert (weights.sum(axis=1) == len(groups)).all()
    assert not all((row.reshape(-1, 5) == row.reshape(-1, 5)[:, :1]).all() for row in weights)


def test_large_holdouts_are_resampled_in_blocks() -> None:
    holdout = LabelledRows(np.zeros(10_000, dtype=int), ["0", "1"])
    blocks = list(resample_weights(holdout, 1000, seed=0))
    assert len(blocks) > 1 and sum(len(b) for b in blocks) == 1000


def test_the_prior_baseline_scores_chance() -> None:
    y = np.array([0, 0, 0, 1] * 25)
    holdout = LabelledRows(y, ["0", "1"])
    baseline = prior_scores(y, 2, len(y))
    assert metric_value("roc_auc", holdout, baseline) == pytest.approx(0.5)
    assert metric_value("accuracy", holdout, baseline) == pytest.approx(0.75)
    value, low, high = value_interval(
        "accuracy", holdout, baseline, confidence=0.95, resamples=1000, seed=0
    )
    assert value == pytest.approx(0.75)
    assert low < value < high
