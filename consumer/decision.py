"""The champion/challenger rule on paired intervals (consumer.judge). Pure: no model, no I/O.

In order: the holdout must be large enough (`holdout.min_rows`) and define the metric; the
challenger must clear the floor; the first version is then promoted; later ones must beat the
champion with confidence and keep the guard metric non-inferior.
"""

from __future__ import annotations

from dataclasses import dataclass

from consumer.judge import (
    LOWER_IS_BETTER,
    METRIC_NAMES,
    Interval,
    LabelledRows,
    Scores,
    metric_value,
    paired_interval,
)
from shared.settings import PromotionSettings

PROMOTED = "promoted"
KEPT = "kept champion"
WORSE = "worse than champion"  # with confidence: a reason to look for a bad file
BELOW_FLOOR = "below floor"  # no better than chance: a reason to look for a bad file
NOT_JUDGED = "not judged"  # the holdout cannot decide yet
# The champion was trained on a retracted file and moved to the best clean version: a forced
# move, not a statistical promotion (consumer.commit, consumer.verdict.best_clean_version).
REPLACED_RETRACTED = "replaced a retracted champion"


@dataclass(frozen=True)
class Decision:
    outcome: str
    metric: str
    challenger: float | None
    champion: float | None
    comparison: Interval | None  # vs the champion; vs the baseline for a first version
    baseline: Interval | None  # vs the prior-probability baseline
    guard: Interval | None
    reason: str

    @property
    def promote(self) -> bool:
        return self.outcome == PROMOTED

    @property
    def blames_new_data(self) -> bool:
        """The challenger lost with confidence, or sank under the floor."""
        return self.outcome in (WORSE, BELOW_FLOOR)

    @property
    def delta(self) -> float | None:
        return None if self.comparison is None else self.comparison.delta

    def _versus(self) -> str:
        if self.comparison is None:
            return ""
        return "baseline" if self.comparison is self.baseline else "champion"

    def tags(self) -> dict[str, str]:
        """The MLflow version tags every decision leaves (empty strings when undefined)."""
        c = self.comparison

        def fmt(value: float | None) -> str:
            return "" if value is None else f"{value:.6f}"

        return {
            "arrivals.delta": fmt(c and c.delta),
            "arrivals.delta_ci_low": fmt(c and c.low),
            "arrivals.delta_ci_high": fmt(c and c.high),
            "arrivals.confidence": "" if c is None else f"{c.confidence:g}",
            "arrivals.delta_vs": ""
            if c is None
            else "baseline"
            if c is self.baseline
            else "champion",
            "arrivals.mde": fmt(c and c.mde),
            "arrivals.resampled": "" if c is None else c.unit,
            "arrivals.decision_reason": self.reason,
        }


def _worse_than(metric: str, value: float, floor: float) -> bool:
    return value > floor if metric in LOWER_IS_BETTER else value < floor


def _name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def decide(
    holdout: LabelledRows,
    challenger: Scores,
    champion: Scores | None,
    baseline: Scores,
    promotion: PromotionSettings,
    *,
    champion_version: str | None = None,
    min_rows: int = 0,
) -> Decision:
    """Judge `challenger` against `champion` (None: no champion yet) on the same rows."""
    metric = promotion.metric
    settings = {
        "confidence": promotion.confidence,
        "resamples": promotion.resamples,
        "seed": promotion.seed,
    }

    def compare(measure: str, a: Scores, b: Scores) -> Interval:
        return paired_interval(measure, holdout, a, b, **settings)

    def not_judged(reason: str) -> Decision:
        return Decision(NOT_JUDGED, metric, None, None, None, None, None, reason)

    if holdout.rows == 0 or holdout.rows < min_rows:
        return not_judged(
            f"the holdout has {holdout.rows} rows, fewer than holdout.min_rows={min_rows}: "
            "versions are registered, none becomes champion until it has"
        )
    if metric in ("roc_auc", "log_loss") and len(set(holdout.y.tolist())) < 2:
        return not_judged(f"the holdout has a single class: {_name(metric)} is undefined")
    value = metric_value(metric, holdout, challenger)
    champion_value = None if champion is None else metric_value(metric, holdout, champion)

    def verdict(outcome: str, reason: str, **found) -> Decision:
        values = {"comparison": None, "baseline": None, "guard": None, **found}
        return Decision(outcome, metric, value, champion_value, reason=reason, **values)

    floor = compare(metric, challenger, baseline)
    if promotion.floor == "baseline":
        if floor.delta <= 0:
            return verdict(
                BELOW_FLOOR,
                f"{_name(metric)} {value:.3f} is no better than the prior baseline "
                f"({floor.b:.3f}): {floor.text()}",
                baseline=floor,
                comparison=floor if champion is None else None,
            )
        if not floor.low > 0:  # NaN (no usable resample) keeps too
            return verdict(
                KEPT,
                f"not sure it beats the prior baseline: {floor.text()} crosses +0.000",
                baseline=floor,
                comparison=floor if champion is None else None,
            )
    elif promotion.floor is not None and _worse_than(metric, value, promotion.floor):
        return verdict(
            BELOW_FLOOR,
            f"{_name(metric)} {value:.3f} is worse than the floor {promotion.floor} "
            "(promotion.floor)",
            baseline=floor,
            comparison=floor if champion is None else None,
        )
    if champion is None:
        return verdict(
            PROMOTED,
            f"first version: {floor.text()} over the prior baseline",
            baseline=floor,
            comparison=floor,
        )
    against = compare(metric, challenger, champion)
    who = f"champion v{champion_version}" if champion_version else "the champion"
    found = {"baseline": floor, "comparison": against}
    if against.high < 0:
        return verdict(WORSE, f"{against.text()}: worse than {who}", **found)
    margin = promotion.min_improvement
    if not against.low > margin:
        return verdict(
            KEPT, f"{against.text()} vs {who}: not sure enough, CI crosses {margin:+.3f}", **found
        )
    guard_metric = promotion.guard_metric
    if guard_metric is not None and guard_metric != metric:
        guard = compare(guard_metric, challenger, champion)
        found["guard"] = guard
        if not guard.low > -promotion.guard_tolerance:
            return verdict(
                KEPT,
                f"{against.text()} beats {who}, but {guard.text()} may lose more than "
                f"{promotion.guard_tolerance} (promotion.guard_tolerance)",
                **found,
            )
    return verdict(PROMOTED, f"{against.text()} beats {who}", **found)
