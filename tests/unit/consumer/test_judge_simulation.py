"""Simulations that fail if the paired bootstrap decision were wrong (consumer.judge).

Figures quoted in the README come from these tests (seeded; each logs its rate:
`pytest tests/unit/consumer/test_judge_simulation.py -o log_cli=true`).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from consumer.judge import paired_interval
from tests.support.simulate import draw, sigma_for, true_auc

log = logging.getLogger(__name__)
CONFIDENCE = 0.95
RESAMPLES = 1000  # the minimum the settings allow: the figures hold at the default 2000 too


def _rates(comparisons: int, seed: int, **scenario) -> tuple[float, float]:
    """(new rule, old rule) promotion rates: lower bound > 0, and point delta > 0."""
    rng = np.random.default_rng(seed)
    new = old = 0
    for i in range(comparisons):
        holdout, challenger, champion = draw(rng, **scenario)
        interval = paired_interval(
            "roc_auc",
            holdout,
            challenger,
            champion,
            confidence=CONFIDENCE,
            resamples=RESAMPLES,
            seed=i,
        )
        new += interval.low > 0
        old += interval.delta > 0
    return new / comparisons, old / comparisons


def test_the_simulated_models_have_the_stated_quality() -> None:
    assert true_auc(sigma_for(0.80)) == pytest.approx(0.80)
    assert true_auc(sigma_for(0.85)) == pytest.approx(0.85)


def test_equal_models_are_promoted_at_most_5_percent_of_the_time() -> None:
    """600 null comparisons (two models of equal quality by construction, 200 rows)."""
    new, old = _rates(600, seed=11, rows=200, auc_a=0.80, auc_b=0.80)
    log.warning(f"null, 200 rows: new rule promotes {new:.1%}, old rule {old:.1%}")
    assert new <= 0.05
    assert old > 0.40  # the raw-delta rule is a coin flip: what this replaces


def test_equal_models_on_a_tips_sized_holdout() -> None:
    """The same at 61 rows, the size of the tips holdout."""
    new, _old = _rates(600, seed=12, rows=61, auc_a=0.80, auc_b=0.80)
    log.warning(f"null, 61 rows: new rule promotes {new:.1%}")
    assert new <= 0.05


def test_a_real_improvement_is_promoted_at_least_80_percent_of_the_time() -> None:
    """ROC AUC 0.80 -> 0.85 (+0.05) on an 800-row holdout: 300 comparisons."""
    new, _old = _rates(300, seed=13, rows=800, auc_a=0.85, auc_b=0.80)
    log.warning(f"+0.05 at 800 rows: promoted {new:.1%}")
    assert new >= 0.80


def test_a_large_improvement_on_a_tips_sized_holdout() -> None:
    """ROC AUC 0.75 -> 0.90 (+0.15) on 61 rows: what 61 rows can detect at 70% power."""
    new, _old = _rates(300, seed=14, rows=61, auc_a=0.90, auc_b=0.75)
    log.warning(f"+0.15 at 61 rows: promoted {new:.1%}")
    assert new >= 0.65


def test_rows_that_come_in_files_need_the_file_level_bootstrap() -> None:
    """Equal models whose errors are correlated within files (12 files of 40 rows).

    Resampling rows as if independent makes the interval too narrow and promotes too often;
    resampling whole files keeps the rate at the nominal level.
    """
    scenario = {"rows": 480, "auc_a": 0.80, "auc_b": 0.80, "files": 12, "file_effect": 3.0}
    clustered, _ = _rates(500, seed=15, **scenario)
    rng = np.random.default_rng(15)
    independent = 0
    for i in range(500):
        holdout, a, b = draw(rng, **scenario)
        rows_only = type(holdout)(holdout.y, holdout.labels, None)
        interval = paired_interval(
            "roc_auc", rows_only, a, b, confidence=CONFIDENCE, resamples=RESAMPLES, seed=i
        )
        independent += interval.low > 0
    log.warning(f"clustered null: by file {clustered:.1%}, by row {independent / 500:.1%}")
    assert clustered <= 0.05
    assert independent / 500 > 0.05  # the wrong method fails the same bar
