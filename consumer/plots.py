"""Evaluation figures for MLflow. Plain matplotlib `Figure`s: no pyplot, no display needed."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay


def evaluation_figures(pipeline: Any, x: pd.DataFrame, y: pd.Series) -> dict[str, Figure]:
    """Confusion matrix (always) and ROC curve (binary labels) on the holdout."""
    if len(x) == 0 or y.nunique() < 2:
        return {}
    matrix = Figure(figsize=(4.5, 4))
    axis = matrix.subplots()
    ConfusionMatrixDisplay.from_estimator(pipeline, x, y, ax=axis, colorbar=False)
    axis.set_title("Holdout confusion matrix")
    figures = {"plots/confusion_matrix.png": matrix}
    if y.nunique() == 2:
        roc = Figure(figsize=(4.5, 4))
        axis = roc.subplots()
        RocCurveDisplay.from_estimator(pipeline, x, y, ax=axis)
        axis.plot([0, 1], [0, 1], linestyle="--", color="grey")
        axis.set_title("Holdout ROC")
        figures["plots/roc_curve.png"] = roc
    return figures


def metric_over_versions(history: list[dict], metric: str) -> Figure:
    """Each version's holdout metric, with the interval of its paired comparison (drawn
    around the champion it was judged against), the champion as a step line, promotions
    as stars."""
    figure = Figure(figsize=(7, 3.5))
    axis = figure.subplots()
    sign = -1 if metric == "log_loss" else 1  # deltas are "better is positive"
    versions, values, champions, low_err, high_err = [], [], [], [], []
    for h in history:
        value = h["metrics"].get(metric)
        versions.append(int(h["version"]))
        values.append(value)
        against = (h.get("champion_metrics") or {}).get(metric)
        low, high = h.get("delta_ci_low"), h.get("delta_ci_high")
        if None not in (value, against, low, high):
            ends = sorted((against + sign * low, against + sign * high))
            low_err.append(max(0.0, value - ends[0]))
            high_err.append(max(0.0, ends[1] - value))
        else:
            low_err.append(0.0)
            high_err.append(0.0)
        champions.append(
            value if h.get("champion_moved") else (champions[-1] if champions else None)
        )
    axis.errorbar(
        versions,
        values,
        yerr=[low_err, high_err],
        fmt="o",
        capsize=3,
        label="challenger (CI of its paired delta)",
    )
    axis.step(versions, champions, where="post", color="grey", label="champion")
    promoted = [(v, m) for v, m, h in zip(versions, values, history, strict=True) if h["promoted"]]
    if promoted:
        xs, ys = zip(*promoted, strict=True)
        axis.scatter(
            xs, ys, marker="*", s=160, color="gold", edgecolor="black", zorder=3, label="promoted"
        )
    axis.set_xlabel("model version")
    axis.set_ylabel(f"holdout {metric}")
    axis.legend(fontsize="small")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure
