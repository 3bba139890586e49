"""Train and evaluate: the pipeline, its metrics, class probabilities. Pure scikit-learn.

Imported lazily by the retrain tasks, so the flow module stays cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from consumer.estimators import build_classifier
from shared.dataset import compute_label, row_keys
from shared.settings import DatasetSettings, ModelSettings, TrainingSettings

# Types skops refuses to load unless told; these are the tree stores of our own classifiers
# (reviewed: plain node arrays), never types taken from a file we did not write. Every
# pipeline also needs numpy.dtype: a SimpleImputer keeps the dtype it was fitted on (float64,
# object), which skops rebuilds from an empty array saved without pickle: no code runs.
_IMPUTER_TYPES = ["numpy.dtype"]
SKOPS_TRUSTED_TYPES = {
    "random_forest": ["sklearn.tree._tree.Tree", *_IMPUTER_TYPES],
    "logistic_regression": [*_IMPUTER_TYPES],
    "hist_gradient_boosting": [
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        *_IMPUTER_TYPES,
    ],
}

MISSING = "missing"  # the category a missing categorical value becomes


def build_pipeline(model: ModelSettings, dataset: DatasetSettings) -> Pipeline:
    """Imputed, scaled numerics + imputed, one-hot categoricals + the configured classifier.

    The imputers are part of the saved model, so it also predicts rows with missing values.
    """
    features = dataset.features
    numeric = Pipeline(
        [
            # keep_empty_features: a column with no value at all in training stays a column
            # (imputed 0), so the model's inputs do not depend on which values arrived.
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
    )
    categorical = Pipeline(
        [
            # "missing" as its own category keeps the information that the value was absent
            # (most-frequent would pass it off as a real answer). NaN first: the None step
            # refuses input that still holds NaN. None comes from callers' object columns.
            ("impute_nan", SimpleImputer(strategy="constant", fill_value=MISSING)),
            (
                "impute_none",
                SimpleImputer(missing_values=None, strategy="constant", fill_value=MISSING),
            ),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    preprocess = ColumnTransformer(
        [("numeric", numeric, features.numeric), ("categorical", categorical, features.categorical)]
    )
    classifier = build_classifier(model)  # InvalidModelParams names a refused key
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def split_xy(frame: pd.DataFrame, dataset: DatasetSettings) -> tuple[pd.DataFrame, pd.Series]:
    """Features and label. Rows missing a label source value are left out: their label is
    unknown (a ratio of NaN would silently read as class 0). Validated arrivals have none;
    a holdout read from a CSV may."""
    known = frame[dataset.label.source_columns()].notna().all(axis=1)
    if not known.all():
        frame = frame[known]
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
    if len(x) == 0:  # a holdout still empty (no source, first files): nothing to score yet
        return {}
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
    train_labels: pd.Series  # the label of every training row (the prior baseline's input)


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
    """Fit on all accepted rows (minus holdout look-alikes), score on the holdout."""
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
        pipeline, evaluate(pipeline, x_hold, y_hold), len(train), len(holdout), leaked, y_train
    )


def class_probabilities(pipeline: Pipeline, x: pd.DataFrame, labels: list) -> np.ndarray:
    """`predict_proba` with one column per entry of `labels` (0 for classes it never saw)."""
    proba = np.zeros((len(x), len(labels)))
    if len(x):
        column = {label: i for i, label in enumerate(labels)}
        predicted = pipeline.predict_proba(x)
        for j, label in enumerate(pipeline.classes_):
            proba[:, column[label]] = predicted[:, j]
    return proba
