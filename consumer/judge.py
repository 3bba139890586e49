"""Paired, statistical champion/challenger decisions. Pure numpy: no scikit-learn model, no
MLflow, no Prefect.

Both models (and a prior-probability baseline) are scored on the *same* holdout rows. The
difference of the primary metric gets a seeded paired bootstrap interval: each resample draws
rows (or whole files, when the rows came in files) with replacement, and both models are
scored on that same draw. A challenger is promoted only when the interval's lower bound beats
`promotion.min_improvement`; the guard metric must be non-inferior (its lower bound above
`-guard_tolerance`) at the same confidence.

The interval is two-sided at `promotion.confidence`, so a promotion is a one-sided test at
(1 - confidence) / 2: 2.5% false promotions between equal models at the default 0.95, as the
simulation tests check (tests/unit/consumer/test_judge_simulation.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np

LOWER_IS_BETTER = frozenset({"log_loss"})
METRIC_NAMES = {
    "roc_auc": "ROC AUC",
    "accuracy": "accuracy",
    "f1_macro": "F1 (macro)",
    "log_loss": "log loss",
}
MDE_POWER = 0.8  # the power the minimum detectable effect is quoted at
_MAX_CELLS = 4_000_000  # resamples x rows per block: bounds the bootstrap's memory
# Fewer files than this and a file-level bootstrap has too few distinct draws to give an
# interval (one file: every draw is the same); rows are resampled instead. That interval is
# too narrow when files differ, which is why decisions say which one they used.
MIN_CLUSTERS = 10


@dataclass(frozen=True)
class Scores:
    """A model's class probabilities on the holdout rows; columns follow `labels`."""

    proba: np.ndarray  # shape (rows, len(labels))

    @property
    def predicted(self) -> np.ndarray:
        return self.proba.argmax(axis=1)


@dataclass(frozen=True)
class LabelledRows:
    """The true class of each holdout row (an index into `labels`) and its file, if any."""

    y: np.ndarray
    labels: list[str]
    groups: np.ndarray | None = None  # one id per row; resampled together when given

    @property
    def rows(self) -> int:
        return len(self.y)

    @property
    def clusters(self) -> int | None:
        """How many files the bootstrap resamples; None: it resamples rows."""
        if self.groups is None:
            return None
        count = len(np.unique(self.groups))
        return count if count >= MIN_CLUSTERS else None


@dataclass(frozen=True)
class Interval:
    """How much better `a` is than `b` (positive = better, whatever the metric's sense)."""

    metric: str
    a: float  # metric of a on all rows
    b: float
    delta: float
    low: float
    high: float
    confidence: float
    se: float  # the bootstrap standard error of delta
    resamples: int  # the resamples that defined the metric (a draw may lack a class)
    files: int | None = None  # whole files resampled; None: rows

    @property
    def unit(self) -> str:
        """What the bootstrap resampled, as decisions say it."""
        return "rows" if self.files is None else f"{self.files} files"

    @property
    def mde(self) -> float:
        """Smallest true delta this holdout detects with 80% power at this confidence."""
        z = NormalDist().inv_cdf
        return (z(0.5 + self.confidence / 2) + z(MDE_POWER)) * self.se

    def text(self) -> str:
        """e.g. 'ROC AUC +0.031 [95% CI +0.012, +0.050]'."""
        return (
            f"{METRIC_NAMES.get(self.metric, self.metric)} {self.delta:+.3f} "
            f"[{self.confidence:.0%} CI {self.low:+.3f}, {self.high:+.3f}]"
        )


# -- metrics on bootstrap weights -------------------------------------------------------------
# Each takes weights of shape (B, n) (how often each row is drawn in each resample; all ones for
# the plain metric) and returns B values, so a resample never copies the rows.


def _weighted_auc(weights: np.ndarray, positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Mann-Whitney ROC AUC of `score` for the rows where `positive`, ties counted half."""
    order = np.argsort(score, kind="stable")
    score, positive, weights = score[order], positive[order], weights[:, order]
    starts = np.flatnonzero(np.r_[True, score[1:] != score[:-1]])  # tie groups
    pos = np.add.reduceat(weights * positive, starts, axis=1)
    neg = np.add.reduceat(weights * ~positive, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def metric_values(
    metric: str, weights: np.ndarray, holdout: LabelledRows, scores: Scores
) -> np.ndarray:
    """The metric for each row of `weights`; NaN where a resample cannot define it."""
    y = holdout.y
    total = weights.sum(axis=1)
    if metric == "accuracy":
        return weights @ (scores.predicted == y) / total
    if metric == "log_loss":
        eps = np.finfo(float).eps
        row_sums = scores.proba.sum(axis=1)
        p_true = scores.proba[np.arange(len(y)), y] / np.where(row_sums > 0, row_sums, 1)
        return weights @ -np.log(np.clip(p_true, eps, 1)) / total
    if metric == "f1_macro":
        predicted = scores.predicted
        present = np.union1d(np.unique(y), np.unique(predicted))
        per_class = []
        for c in present:
            tp = weights @ ((predicted == c) & (y == c))
            wrong = weights @ ((predicted == c) ^ (y == c))  # false positives + negatives
            with np.errstate(invalid="ignore", divide="ignore"):
                per_class.append(np.where(2 * tp + wrong > 0, 2 * tp / (2 * tp + wrong), 0.0))
        return np.mean(per_class, axis=0)
    if metric == "roc_auc":
        if len(holdout.labels) == 2:
            return _weighted_auc(weights, y == 1, scores.proba[:, 1])
        # One-vs-rest, macro average over the classes the holdout has (as scikit-learn).
        per_class = [
            _weighted_auc(weights, y == c, scores.proba[:, c]) for c in np.unique(y).tolist()
        ]
        return np.mean(per_class, axis=0)
    raise ValueError(f"unknown metric {metric!r}")


def metric_value(metric: str, holdout: LabelledRows, scores: Scores) -> float:
    """The metric on all holdout rows."""
    return float(metric_values(metric, np.ones((1, holdout.rows)), holdout, scores)[0])


def resample_weights(holdout: LabelledRows, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of (resamples, rows) draw counts: rows drawn with replacement, or whole files
    when the rows are grouped. Blocks bound memory; the same seed gives the same draws."""
    rng = np.random.default_rng(seed)
    n = holdout.rows
    if holdout.clusters is None:
        units, n_units = np.arange(n), n
    else:
        _, units = np.unique(holdout.groups, return_inverse=True)
        n_units = int(units.max()) + 1
    block = max(1, _MAX_CELLS // max(n, 1))
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        drawn = rng.integers(0, n_units, size=(size, n_units))
        offsets = (np.arange(size) * n_units)[:, None]
        counts = np.bincount((drawn + offsets).ravel(), minlength=size * n_units)
        yield counts.reshape(size, n_units)[:, units].astype(float)


def _better(metric: str, a: np.ndarray | float, b: np.ndarray | float):
    return (b - a) if metric in LOWER_IS_BETTER else (a - b)


def paired_interval(
    metric: str,
    holdout: LabelledRows,
    a: Scores,
    b: Scores,
    *,
    confidence: float,
    resamples: int,
    seed: int,
) -> Interval:
    """How much better `a` is than `b` on the same rows, with a paired bootstrap interval."""
    point_a, point_b = metric_value(metric, holdout, a), metric_value(metric, holdout, b)
    deltas = np.concatenate(
        [
            _better(
                metric,
                metric_values(metric, weights, holdout, a),
                metric_values(metric, weights, holdout, b),
            )
            for weights in resample_weights(holdout, resamples, seed)
        ]
    )
    return replace(_interval(metric, point_a, point_b, deltas, confidence), files=holdout.clusters)


def unpaired_interval(
    metric: str,
    first: tuple[LabelledRows, Scores],
    second: tuple[LabelledRows, Scores],
    *,
    confidence: float,
    resamples: int,
    seed: int,
) -> Interval:
    """How much better a model does on one set of rows than on another (two independent
    bootstraps): e.g. on the holdout vs on one file's own rows."""

    def draws(rows: LabelledRows, scores: Scores, offset: int) -> np.ndarray:
        weights = resample_weights(rows, resamples, seed + offset)
        return np.concatenate([metric_values(metric, w, rows, scores) for w in weights])

    point_a, point_b = metric_value(metric, *first), metric_value(metric, *second)
    deltas = _better(metric, draws(*first, 0), draws(*second, 1))
    return _interval(metric, point_a, point_b, deltas, confidence)


def _interval(metric: str, a: float, b: float, deltas: np.ndarray, confidence: float) -> Interval:
    deltas = deltas[np.isfinite(deltas)]  # a resample without one of the classes has no AUC
    alpha = 1 - confidence
    if len(deltas) < 2:
        low = high = se = float("nan")
    else:
        low, high = (float(q) for q in np.quantile(deltas, [alpha / 2, 1 - alpha / 2]))
        se = float(np.std(deltas, ddof=1))
    return Interval(
        metric, a, b, float(_better(metric, a, b)), low, high, confidence, se, len(deltas)
    )


def value_interval(
    metric: str,
    holdout: LabelledRows,
    scores: Scores,
    *,
    confidence: float,
    resamples: int,
    seed: int,
) -> tuple[float, float, float]:
    """One model's metric on all rows, and its bootstrap interval."""
    values = np.concatenate(
        [
            metric_values(metric, w, holdout, scores)
            for w in resample_weights(holdout, resamples, seed)
        ]
    )
    values = values[np.isfinite(values)]
    alpha = 1 - confidence
    low, high = (
        np.quantile(values, [alpha / 2, 1 - alpha / 2]) if len(values) > 1 else (np.nan,) * 2
    )
    return metric_value(metric, holdout, scores), float(low), float(high)


def prior_scores(train_labels: np.ndarray, n_labels: int, rows: int) -> Scores:
    """The baseline that knows only the class frequencies of the training rows."""
    prior = np.bincount(train_labels, minlength=n_labels) / max(len(train_labels), 1)
    return Scores(np.tile(prior, (rows, 1)))
