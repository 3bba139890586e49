"""Bench part `decisions`: how often each rule promotes between equal models on tips, and
what a decision with the paired bootstrap costs (no services needed).

Equal models: two models of the same kind trained on disjoint random samples of the same
pool (88 rows each) are of equal quality by construction; any promotion between them is a
false one. The old rule promoted on any positive delta on the 61-row holdout.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from consumer.decision import decide
from consumer.judge import Holdout, Scores, paired_interval, prior_scores
from consumer.training import class_probabilities, train_and_evaluate
from shared.dataset import compute_label, holdout_mask, read_source, training_pool
from shared.settings import ModelSettings, Settings

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


def false_promotions(settings: Settings, model: ModelSettings, pairs: int, seed: int) -> dict:
    """Promotion rates of the old rule (delta > 0) and the new one between equal models."""
    dataset, promotion = settings.dataset, settings.promotion
    source = read_source(dataset)
    holdout_frame = source[holdout_mask(len(source), settings.holdout)].reset_index(drop=True)
    pool = training_pool(dataset, settings.holdout)
    y = compute_label(holdout_frame, dataset.label).to_numpy()
    labels = sorted(set(y.tolist()) | set(compute_label(pool, dataset.label).tolist()))
    holdout = Holdout(np.searchsorted(labels, y), [str(v) for v in labels])
    x = holdout_frame[dataset.features.all]
    rng = np.random.default_rng(seed)
    old = new = 0
    deltas = []
    for i in range(pairs):
        order = rng.permutation(len(pool))
        scores = []
        for half in (order[:SAMPLE_ROWS], order[SAMPLE_ROWS : 2 * SAMPLE_ROWS]):
            frame = pool.iloc[half].reset_index(drop=True)
            result = train_and_evaluate(frame, holdout_frame, dataset, model)
            scores.append(Scores(class_probabilities(result.pipeline, x, labels)))
        interval = paired_interval(
            promotion.metric,
            holdout,
            *scores,
            confidence=promotion.confidence,
            resamples=promotion.resamples,
            seed=i,
        )
        deltas.append(abs(interval.delta))
        old += interval.delta > promotion.min_improvement
        new += interval.low > promotion.min_improvement
    return {
        "model": model.kind,
        "pairs": pairs,
        "holdout_rows": holdout.rows,
        "old_rule_rate": old / pairs,
        "new_rule_rate": new / pairs,
        "median_abs_delta": float(np.median(deltas)),
    }


def decision_seconds(settings: Settings, rows: int, repeats: int, seed: int) -> dict:
    """Wall time of one `decide` (baseline + champion comparisons) on `rows` holdout rows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    latent = 2.0 * y + rng.normal(size=rows)

    def model() -> Scores:
        p = 1 / (1 + np.exp(-(latent + 1.3 * rng.normal(size=rows))))
        return Scores(np.c_[1 - p, p])

    holdout = Holdout(y, ["0", "1"])
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
        "| model | pairs | holdout rows | median abs. delta | old rule (delta > 0) | new rule |",
        "|---|---|---|---|---|---|",
    ]
    for row in part["false_promotions"]:
        lines.append(
            f"| {row['model']} | {row['pairs']} | {row['holdout_rows']} | "
            f"{row['median_abs_delta']:.3f} | {row['old_rule_rate']:.0%} | "
            f"{row['new_rule_rate']:.1%} |"
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
