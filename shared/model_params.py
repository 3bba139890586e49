"""The parameter names of each `model.kind`'s estimator, checked without importing sklearn.

`load_settings` runs in every CLI command and at the start of every retrain run, where a
scikit-learn import (about a second) is too dear, so the names are listed here.
tests/unit/shared/test_model_params.py compares them with the installed scikit-learn's
`get_params()`, so an upgrade that adds or removes one fails a test instead of drifting.
The values are checked with scikit-learn itself (`consumer.estimators`) where start-up
already pays for it: `arrivals up` and each training.
"""

from __future__ import annotations

import difflib

# kind -> (the estimator's class name, its keyword arguments). `random_state` is left out:
# it has its own key, model.random_state.
ESTIMATOR_PARAMS: dict[str, tuple[str, frozenset[str]]] = {
    "random_forest": (
        "RandomForestClassifier",
        frozenset(
            {
                "n_estimators",
                "criterion",
                "max_depth",
                "min_samples_split",
                "min_samples_leaf",
                "min_weight_fraction_leaf",
                "max_features",
                "max_leaf_nodes",
                "min_impurity_decrease",
                "bootstrap",
                "oob_score",
                "n_jobs",
                "verbose",
                "warm_start",
                "class_weight",
                "ccp_alpha",
                "max_samples",
                "monotonic_cst",
            }
        ),
    ),
    "logistic_regression": (
        "LogisticRegression",
        frozenset(
            {
                "penalty",
                "C",
                "l1_ratio",
                "dual",
                "tol",
                "fit_intercept",
                "intercept_scaling",
                "class_weight",
                "solver",
                "max_iter",
                "verbose",
                "warm_start",
                "n_jobs",
            }
        ),
    ),
    "hist_gradient_boosting": (
        "HistGradientBoostingClassifier",
        frozenset(
            {
                "loss",
                "learning_rate",
                "max_iter",
                "max_leaf_nodes",
                "max_depth",
                "min_samples_leaf",
                "l2_regularization",
                "max_features",
                "max_bins",
                "categorical_features",
                "monotonic_cst",
                "interaction_cst",
                "warm_start",
                "early_stopping",
                "scoring",
                "validation_fraction",
                "n_iter_no_change",
                "tol",
                "verbose",
                "class_weight",
            }
        ),
    ),
}


def unknown_param(kind: str, params: dict[str, object]) -> str | None:
    """`model.params.<key>: <why>` for the first key the kind's estimator does not take."""
    class_name, names = ESTIMATOR_PARAMS[kind]
    for key in params:
        if key == "random_state":
            return "model.params.random_state: set model.random_state instead"
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return f"model.params.{key}: not a parameter of {class_name}{hint}"
    return None
