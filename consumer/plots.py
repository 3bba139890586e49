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
    """The primary metric of every version so far; promotions drawn as stars."""
    figure = Figure(figsize=(7, 3.5))
    axis = figure.subplots()
    versions = [int(h["version"]) for h in history]
    values = [h["metrics"].get(metric) for h in history]
    axis.plot(versions, values, marker="o", label=metric)
    promoted = [(v, m) for v, m, h in zip(versions, values, history, strict=True) if h["promoted"]]
    if promoted:
        xs, ys = zip(*promoted, strict=True)
        axis.scatter(
            xs, ys, marker="*", s=160, color="gold", edgecolor="black", zorder=3, label="promoted"
        )
    axis.set_xlabel("model version")
    axis.set_ylabel(f"holdout {metric}")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure
