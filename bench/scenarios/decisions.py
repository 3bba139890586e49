"""Part `decisions`: how often each rule promotes between equal models on tips, and
what a decision with the paired bootstrap costs (no services needed).

Equal models: two models of the same kind trained on disjoint random samples of the same
pool (88 rows each) are of equal quality in expectation. Each realized pair still differs a
little in true quality (each saw other rows), which the real tips data cannot measure; so the
part also runs the same experiment on a tips-like population with a known label model, where
each model's true ROC AUC is computed on 100,000 rows and a promotion is false exactly when
the promoted model is not truly better. A naive rule promotes on any positive delta.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from consumer.decision import decide
from consumer.judge import (
    Interval,
    LabelledRows,
    Scores,
    metric_value,
    paired_interval,
    prior_scores,
)
from consumer.training import class_probabilities, train_and_evaluate
from shared.dataset import compute_label, holdout_mask, read_source, training_pool
from shared.settings import ModelSettings, PromotionSettings, Settings

SAMPLE_ROWS = 88
FOREST = ModelSettings(
    name="bench", kind="random_forest", params={"n_estimators": 200, "max_depth": 6, "n_jobs": 1}
)


def _quantiles(values: list[float]) -> dict[str, float]:
    return {
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": float(np.max(values)),
    }


def _judge_pair(
    promotion: PromotionSettings, holdout: LabelledRows, scores: list[Scores], seed: int
) -> Interval:
    """The paired interval a decision would draw between two models' scores."""
    return paired_interval(
        promotion.metric,
        holdout,
        *scores,
        confidence=promotion.confidence,
        resamples=promotion.resamples,
        seed=seed,
    )


def false_promotions(settings: Settings, model: ModelSettings, pairs: int, seed: int) -> dict:
    """Promotion rates of the naive rule (delta > 0) and of Arrivals' rule between equal models."""
    dataset, promotion = settings.dataset, settings.promotion
    source = read_source(dataset)
    holdout_frame = source[holdout_mask(len(source), settings.holdout)].reset_index(drop=True)
    pool = training_pool(dataset, settings.holdout)
    y = compute_label(holdout_frame, dataset.label).to_numpy()
    labels = sorted(set(y.tolist()) | set(compute_label(pool, dataset.label).tolist()))
    holdout = LabelledRows(np.searchsorted(labels, y), [str(v) for v in labels])
    x = holdout_frame[dataset.features.all]
    rng = np.random.default_rng(seed)
    naive = arrivals = 0
    deltas = []
    for i in range(pairs):
        order = rng.permutation(len(pool))
        scores = []
        for half in (order[:SAMPLE_ROWS], order[SAMPLE_ROWS : 2 * SAMPLE_ROWS]):
            frame = pool.iloc[half].reset_index(drop=True)
            result = train_and_evaluate(frame, holdout_frame, dataset, model)
            scores.append(Scores(class_probabilities(result.pipeline, x, labels)))
        interval = _judge_pair(promotion, holdout, scores, seed=i)
        deltas.append(abs(interval.delta))
        naive += interval.delta > promotion.min_improvement
        arrivals += interval.low > promotion.min_improvement
    return {
        "model": model.kind,
        "pairs": pairs,
        "holdout_rows": holdout.rows,
        "naive_rule_rate": naive / pairs,
        "arrivals_rule_rate": arrivals / pairs,
        "median_abs_delta": float(np.median(deltas)),
    }


POPULATION_ROWS = 100_000


def tips_like_population(settings: Settings, rows: int, seed: int) -> pd.DataFrame:
    """Tips rows resampled (bills jittered) with a label drawn from a logistic model fitted on
    the real tips: a population whose every model can be scored exactly."""
    from sklearn.linear_model import LogisticRegression

    dataset = settings.dataset
    rng = np.random.default_rng(seed)
    source = read_source(dataset)
    frame = source.iloc[rng.integers(0, len(source), rows)].reset_index(drop=True)
    frame["total_bill"] = (frame["total_bill"] * rng.lognormal(0, 0.1, rows)).round(2)
    features = pd.get_dummies(source[dataset.features.all], dtype=float)
    truth = LogisticRegression(max_iter=1000).fit(features, compute_label(source, dataset.label))
    encoded = pd.get_dummies(frame[dataset.features.all], dtype=float)
    encoded = encoded.reindex(columns=features.columns, fill_value=0.0)
    positive = rng.random(rows) < truth.predict_proba(encoded)[:, 1]
    # Encode the drawn label back through the label rule's own column (tip >= threshold).
    rule = dataset.label
    frame[rule.column] = np.where(positive, rule.threshold + 1.0, max(rule.threshold - 1.0, 0))
    return frame


def simulated_false_promotions(
    settings: Settings, model: ModelSettings, pairs: int, seed: int
) -> dict[str, Any]:
    """The same pairs on the tips-like population: promotions of a not-truly-better model."""
    dataset, promotion = settings.dataset, settings.promotion
    population = tips_like_population(settings, POPULATION_ROWS + 61, seed)
    truth_rows, holdout_frame = population.iloc[:POPULATION_ROWS], population.iloc[-61:]
    x_truth = truth_rows[dataset.features.all]
    y_truth = compute_label(truth_rows, dataset.label).to_numpy()
    x = holdout_frame[dataset.features.all]
    holdout = LabelledRows(compute_label(holdout_frame, dataset.label).to_numpy(), ["0", "1"])
    truth = LabelledRows(y_truth, ["0", "1"])
    rng = np.random.default_rng(seed)
    counts = {"null_pairs": 0, "arrivals_false": 0, "naive_false": 0}
    for i in range(pairs):
        scores, true_auc = [], []
        for _ in range(2):
            frame = truth_rows.iloc[rng.integers(0, POPULATION_ROWS, SAMPLE_ROWS)]
            result = train_and_evaluate(frame, holdout_frame, dataset, model)
            scores.append(Scores(class_probabilities(result.pipeline, x, [0, 1])))
            exact = Scores(class_probabilities(result.pipeline, x_truth, [0, 1]))
            true_auc.append(metric_value("roc_auc", truth, exact))
        interval = _judge_pair(promotion, holdout, scores, seed=i)
        if true_auc[0] <= true_auc[1]:  # the challenger is not truly better
            counts["null_pairs"] += 1
            counts["arrivals_false"] += interval.low > promotion.min_improvement
            counts["naive_false"] += interval.delta > promotion.min_improvement
    null = max(counts["null_pairs"], 1)
    return {
        "model": model.kind,
        "pairs": pairs,
        "not_better_pairs": counts["null_pairs"],
        "naive_rule_false_rate": counts["naive_false"] / null,
        "arrivals_rule_false_rate": counts["arrivals_false"] / null,
    }


def decision_seconds(settings: Settings, rows: int, repeats: int, seed: int) -> dict:
    """Wall time of one `decide` (baseline + champion comparisons) on `rows` holdout rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    latent = 2.0 * y + rng.normal(size=rows)

    def model() -> Scores:
        p = 1 / (1 + np.exp(-(latent + 1.3 * rng.normal(size=rows))))
        return Scores(np.c_[1 - p, p])

    holdout = LabelledRows(y, ["0", "1"])
    challenger, champion, baseline = model(), model(), prior_scores(y, 2, rows)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        decide(holdout, challenger, champion, baseline, settings.promotion)
        seconds.append(time.perf_counter() - started)
    return {"rows": rows, "repeats": repeats, **_quantiles(seconds)}


def measure_decisions(settings: Settings, pairs: int, seed: int) -> dict[str, Any]:
    """The `decisions` part: false promotions on tips, and decision cost by holdout size."""
    return {
        "resamples": settings.promotion.resamples,
        "confidence": settings.promotion.confidence,
        "false_promotions": [
            false_promotions(settings, settings.model, pairs, seed),
            false_promotions(settings, FOREST, pairs, seed),
        ],
        "simulated": [
            simulated_false_promotions(settings, settings.model, pairs, seed),
            simulated_false_promotions(settings, FOREST, pairs, seed),
        ],
        "decision_seconds": [
            decision_seconds(settings, rows, repeats, seed)
            for rows, repeats in ((61, 30), (1_000, 10), (10_000, 3))
        ],
    }


def render_decisions(part: dict[str, Any]) -> str:
    """Markdown tables of the `decisions` part."""
    lines = [
        "## Decisions: promotions between equal models on tips",
        "",
        f"Pairs of models trained on disjoint {SAMPLE_ROWS}-row samples of the same pool, "
        f"judged on the tips holdout; paired bootstrap, {part['resamples']} resamples, "
        f"{part['confidence']:.0%} intervals.",
        "",
        "| model | pairs | holdout rows | median abs. delta | naive rule (delta > 0) "
        "| Arrivals' rule |",
        "|---|---|---|---|---|---|",
    ]
    for row in part["false_promotions"]:
        lines.append(
            f"| {row['model']} | {row['pairs']} | {row['holdout_rows']} | "
            f"{row['median_abs_delta']:.3f} | {row['naive_rule_rate']:.0%} | "
            f"{row['arrivals_rule_rate']:.1%} |"
        )
    lines += [
        "",
        f"The same on a tips-like population ({POPULATION_ROWS:,} rows, label drawn from a "
        "logistic model fitted on tips), where each model's true ROC AUC is known: the rate of "
        "promotions among pairs whose challenger is not truly better.",
        "",
        "| model | pairs | not truly better | naive rule false promotions | Arrivals' rule |",
        "|---|---|---|---|---|",
    ]
    for row in part.get("simulated", []):
        lines.append(
            f"| {row['model']} | {row['pairs']} | {row['not_better_pairs']} | "
            f"{row['naive_rule_false_rate']:.0%} | {row['arrivals_rule_false_rate']:.1%} |"
        )
    lines += [
        "",
        "| holdout rows | decision p50 (s) | p95 (s) | max (s) |",
        "|---|---|---|---|",
    ]
    for row in part["decision_seconds"]:
        lines.append(
            f"| {row['rows']:,} | {row['p50']:.3f} | {row['p95']:.3f} | {row['max']:.3f} |"
        )
    return "\n".join(lines) + "\n"
