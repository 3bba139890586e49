"""Train, evaluate and judge. Pure scikit-learn: no Prefect, no MLflow.

Imported lazily by the retrain tasks, so the flow module stays cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from shared.dataset import compute_label, row_keys
from shared.settings import DatasetSettings, ModelSettings, PromotionSettings, TrainingSettings

LOWER_IS_BETTER = {"log_loss"}

# Types skops refuses to load unless told; these are the tree stores of our own classifiers
# (reviewed: plain node arrays), never types taken from a file we did not write.
SKOPS_TRUSTED_TYPES = {
    "random_forest": ["sklearn.tree._tree.Tree"],
    "logistic_regression": [],
    "hist_gradient_boosting": ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
}

_CLASSIFIERS = {
    "random_forest": RandomForestClassifier,
    "logistic_regression": LogisticRegression,
    "hist_gradient_boosting": HistGradientBoostingClassifier,
}


def build_pipeline(model: ModelSettings, dataset: DatasetSettings) -> Pipeline:
    """Categorical one-hot encoding + scaled numerics + the configured classifier."""
    features = dataset.features
    preprocess = ColumnTransformer(
        [
            ("numeric", StandardScaler(), features.numeric),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                features.categorical,
            ),
        ]
    )
    classifier = _CLASSIFIERS[model.kind](**model.params, random_state=model.random_state)
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def split_xy(frame: pd.DataFrame, dataset: DatasetSettings) -> tuple[pd.DataFrame, pd.Series]:
    return frame[dataset.features.all], compute_label(frame, dataset.label)


def drop_holdout_rows(
    frame: pd.DataFrame, holdout: pd.DataFrame, columns: list[str]
) -> tuple[pd.DataFrame, int]:
    """Remove rows identical to a holdout row, so a drop of the source never leaks the holdout."""
    leaked = row_keys(frame, columns).isin(set(row_keys(holdout, columns)))
    return frame[~leaked.to_numpy()].reset_index(drop=True), int(leaked.sum())


def apply_policy(frame: pd.DataFrame, training: TrainingSettings) -> pd.DataFrame:
    """Bound the training rows: the newest `max_rows` (window) or a seeded sample of them."""
    if training.policy == "all" or len(frame) <= training.max_rows:
        return frame
    if training.policy == "window":
        return frame.iloc[-training.max_rows :].reset_index(drop=True)
    return frame.sample(n=training.max_rows, random_state=training.seed).reset_index(drop=True)


def evaluate(pipeline: Pipeline, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Holdout metrics; ROC AUC and log loss only when the classes allow them."""
    predicted = pipeline.predict(x)
    metrics = {
        "accuracy": float(accuracy_score(y, predicted)),
        "f1_macro": float(f1_score(y, predicted, average="macro")),
    }
    classes = list(pipeline.classes_)
    if len(classes) >= 2 and set(y.unique()) <= set(classes) and y.nunique() >= 2:
        proba = pipeline.predict_proba(x)
        if len(classes) == 2:
            metrics["roc_auc"] = float(roc_auc_score(y, proba[:, 1]))
        else:
            metrics["roc_auc"] = float(roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        metrics["log_loss"] = float(log_loss(y, proba, labels=classes))
    return metrics


@dataclass(frozen=True)
class TrainResult:
    pipeline: Pipeline
    metrics: dict[str, float]
    train_rows: int
    holdout_rows: int
    leaked_rows_dropped: int


class NotTrainable(ValueError):
    """The accepted data cannot train a classifier yet (for example a single class)."""


def _predict_in_one_thread(pipeline: Pipeline) -> None:
    """Fit in parallel, predict in one thread: a forest sums its trees' probabilities in
    whatever order its threads finish, which changed log_loss in the last digit between two
    identical trainings. Seeded fits are identical either way; one-thread sums are too."""
    classifier = pipeline[-1]
    if "n_jobs" in classifier.get_params():
        classifier.set_params(n_jobs=1)


def train_and_evaluate(
    accepted: pd.DataFrame,
    holdout: pd.DataFrame,
    dataset: DatasetSettings,
    model: ModelSettings,
) -> TrainResult:
    """Fit on all accepted rows (minus holdout look-alikes), score on the fixed holdout."""
    columns = list(dataset.columns)
    train, leaked = drop_holdout_rows(accepted, holdout, columns)
    x_train, y_train = split_xy(train, dataset)
    if y_train.nunique() < 2:
        raise NotTrainable(
            f"accepted data has {len(train)} row(s) of a single class {y_train.unique().tolist()}"
        )
    pipeline = build_pipeline(model, dataset)
    pipeline.fit(x_train, y_train)
    _predict_in_one_thread(pipeline)
    x_hold, y_hold = split_xy(holdout, dataset)
    return TrainResult(
        pipeline, evaluate(pipeline, x_hold, y_hold), len(train), len(holdout), leaked
    )


@dataclass(frozen=True)
class Decision:
    promote: bool
    metric: str
    challenger: float | None
    champion: float | None
    delta: float | None
    reason: str


def _better(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` (positive = better), whatever the metric's sense."""
    return (old - new) if metric in LOWER_IS_BETTER else (new - old)


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    promotion: PromotionSettings,
) -> Decision:
    """The champion/challenger rule, on metrics from the same fixed holdout.

    Promote only when the challenger (1) has the primary metric, (2) is not worse than the
    floor, (3) beats the champion by more than `min_improvement`, and (4) does not lose
    more than `guard_tolerance` on the guard metric. The first version only needs (1)-(2).
    """
    metric = promotion.metric
    new = challenger.get(metric)
    if new is None or np.isnan(new):
        return Decision(False, metric, None, None, None, f"challenger has no {metric}")
    old = champion.get(metric) if champion else None
    delta = None if old is None else new - old

    def keep(reason: str) -> Decision:
        return Decision(False, metric, new, old, delta, reason)

    if promotion.floor is not None and _better(metric, new, promotion.floor) < 0:
        return keep(f"{metric} {new:.4f} is worse than the floor {promotion.floor}")
    if champion is None or old is None or np.isnan(old):
        return Decision(True, metric, new, None, None, "first version: no champion yet")
    gain = _better(metric, new, old)
    if gain <= promotion.min_improvement:
        return keep(
            f"{metric} {new:.4f} does not beat champion {old:.4f} by more than "
            f"{promotion.min_improvement}"
        )
    guard = promotion.guard_metric
    if guard is not None and guard in challenger and guard in champion:
        loss = -_better(guard, challenger[guard], champion[guard])
        if loss > promotion.guard_tolerance:
            return keep(
                f"{metric} improves by {gain:.4f} but {guard} drops by {loss:.4f} "
                f"(> {promotion.guard_tolerance} allowed)"
            )
    return Decision(
        True,
        metric,
        new,
        old,
        delta,
        f"{metric} {new:.4f} beats champion {old:.4f} by {gain:.4f} "
        f"(> {promotion.min_improvement})",
    )
