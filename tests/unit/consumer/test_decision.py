"""Every branch of the champion/challenger rule (consumer.decision), on scores built so the
answer is known: each test names the branch it reaches and checks it was that one."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.decision import BELOW_FLOOR, KEPT, NOT_JUDGED, PROMOTED, WORSE, decide
from consumer.judge import LabelledRows, Scores, prior_scores
from shared.settings import PromotionSettings

ROWS = 400
Y = np.array([0, 1] * (ROWS // 2))
HOLDOUT = LabelledRows(Y, ["0", "1"])
BASELINE = prior_scores(Y, 2, ROWS)


def model(skill: float, seed: int) -> Scores:
    """Scores whose separation grows with `skill` (0: chance)."""
    rng = np.random.default_rng(seed)
    latent = skill * (2 * Y - 1) + rng.normal(size=ROWS)
    p = 1 / (1 + np.exp(-latent))
    return Scores(np.c_[1 - p, p])


def judge(challenger, champion, **settings):
    promotion = PromotionSettings(**{"resamples": 1000, **settings})
    return decide(HOLDOUT, challenger, champion, BASELINE, promotion, champion_version="3")


def test_first_version_is_promoted_when_it_surely_beats_the_baseline() -> None:
    decision = judge(model(1.0, 0), None)
    assert decision.outcome == PROMOTED
    assert decision.comparison is decision.baseline and decision.comparison.low > 0
    assert decision.reason.startswith("first version: ROC AUC +")


def test_a_model_at_chance_is_below_the_baseline_floor() -> None:
    decision = judge(model(-0.2, 1), None)
    assert decision.outcome == BELOW_FLOOR and decision.blames_new_data
    assert "no better than the prior baseline" in decision.reason


def test_a_model_not_surely_above_the_baseline_is_kept_out_without_blame() -> None:
    decision = judge(model(0.08, 4), None)
    assert decision.baseline.delta > 0 and decision.baseline.low <= 0
    assert decision.outcome == KEPT and not decision.blames_new_data


def test_a_numeric_floor_for_log_loss_is_an_upper_bound() -> None:
    """log loss is lower-is-better: a floor of 0.5 rejects a log loss above 0.5 only."""
    good = judge(model(2.0, 3), None, metric="log_loss", floor=0.5)
    assert good.challenger < 0.5 and good.outcome == PROMOTED
    weak = judge(model(0.5, 3), None, metric="log_loss", floor=0.5)
    assert weak.challenger > 0.5 and weak.outcome == BELOW_FLOOR
    assert "worse than the floor 0.5" in weak.reason


def test_log_loss_lower_is_better_reaches_the_comparison() -> None:
    """Both clear the baseline floor; the lower log loss wins by the paired interval."""
    decision = judge(model(2.0, 4), model(0.7, 5), metric="log_loss")
    assert decision.baseline.low > 0  # the floor branch was passed, not taken
    assert decision.challenger < decision.champion
    assert decision.outcome == PROMOTED and decision.comparison.low > 0
    assert "beats champion v3" in decision.reason


def test_a_surely_better_challenger_is_promoted() -> None:
    decision = judge(model(1.5, 6), model(0.6, 7))
    assert decision.outcome == PROMOTED and decision.comparison.low > 0
    assert decision.tags()["arrivals.delta_vs"] == "champion"


def test_a_close_challenger_is_kept_not_blamed() -> None:
    decision = judge(model(1.0, 8), model(1.0, 12))
    assert decision.comparison.low <= 0 <= decision.comparison.high
    assert decision.outcome == KEPT and not decision.blames_new_data
    assert "not sure enough, CI crosses +0.000" in decision.reason


def test_min_improvement_moves_the_bar() -> None:
    challenger, champion = model(1.5, 6), model(0.6, 7)
    delta = judge(challenger, champion).comparison
    assert judge(challenger, champion, min_improvement=delta.low - 0.01).promote
    assert not judge(challenger, champion, min_improvement=delta.low + 0.01).promote


def test_a_surely_worse_challenger_blames_new_data() -> None:
    decision = judge(model(0.5, 9), model(1.5, 10))
    assert decision.outcome == WORSE and decision.comparison.high < 0
    assert decision.blames_new_data and "worse than champion v3" in decision.reason


def test_the_guard_is_a_non_inferiority_check() -> None:
    challenger, champion = model(1.5, 6), model(0.6, 7)
    relaxed = judge(challenger, champion, guard_metric="accuracy", guard_tolerance=0.2)
    assert relaxed.outcome == PROMOTED and relaxed.guard.low > -0.2
    # A challenger that ranks better but whose hard predictions all say one class.
    skewed = Scores(np.c_[challenger.proba[:, 0] * 0.2, 1 - challenger.proba[:, 0] * 0.2])
    blocked = judge(skewed, champion, guard_metric="accuracy", guard_tolerance=0.05)
    assert blocked.comparison.low > 0  # it wins on the primary metric...
    assert blocked.outcome == KEPT and blocked.guard.low <= -0.05  # ...the guard stops it
    assert "may lose more than 0.05" in blocked.reason


def test_a_holdout_under_min_rows_judges_nothing() -> None:
    promotion = PromotionSettings(resamples=1000)
    decision = decide(HOLDOUT, model(1.5, 0), None, BASELINE, promotion, min_rows=ROWS + 1)
    assert decision.outcome == NOT_JUDGED and not decision.promote
    assert f"fewer than holdout.min_rows={ROWS + 1}" in decision.reason
    assert set(decision.tags()) >= {"arrivals.delta", "arrivals.confidence"}


def test_a_single_class_holdout_has_no_auc() -> None:
    y = np.ones(50, dtype=int)
    holdout = LabelledRows(y, ["0", "1"])
    decision = decide(
        holdout, Scores(np.full((50, 2), 0.5)), None, prior_scores(y, 2, 50), PromotionSettings()
    )
    assert decision.outcome == NOT_JUDGED and "single class" in decision.reason


def test_floors_outside_the_metric_range_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="outside roc_auc's range"):
        PromotionSettings(floor=1.5)
    with pytest.raises(ValueError, match="outside log_loss's range"):
        PromotionSettings(metric="log_loss", floor=-0.1)
    assert PromotionSettings(metric="log_loss", floor=0.9).floor == 0.9
