"""The pipeline imputes: numeric by median, categorical as a "missing" category, saved with it.

Rows with a missing label are never scored. The model logged to MLflow and loaded back
still predicts rows with missing features (a local SQLite tracking store: no server).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from consumer.training import SKOPS_TRUSTED_TYPES, build_pipeline, evaluate, split_xy
from consumer.validate import validate_csv
from shared.settings import ModelSettings
from tests.support.data import SOURCE_CSV, TIPS

KINDS = ["random_forest", "logistic_regression", "hist_gradient_boosting"]
FAST_PARAMS: dict[str, dict[str, Any]] = {
    "random_forest": {"n_estimators": 25, "max_depth": 5},
    "logistic_regression": {"max_iter": 500},
    "hist_gradient_boosting": {"max_iter": 30},
}
GAPS = {"size": 0.15, "sex": 0.15, "day": 0.15, "smoker": 0.1}  # share of missing cells


def _model(kind: str) -> ModelSettings:
    return ModelSettings(name="imputation", kind=kind, params=FAST_PARAMS[kind], random_state=3)


def _with_gaps(frame: pd.DataFrame, seed: int, none: bool = False) -> pd.DataFrame:
    """`frame` with seeded missing cells in feature-only columns (NaN, or None in text ones)."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    out["size"] = out["size"].astype("float64")
    for column, share in GAPS.items():
        hit = rng.random(len(out)) < share
        missing = None if none and out[column].dtype == object else np.nan
        out.loc[hit, column] = missing
    return out


@pytest.fixture(scope="module")
def tips() -> pd.DataFrame:
    return validate_csv(SOURCE_CSV, TIPS).frame


def test_numbers_get_the_training_median_and_categories_a_missing_column(
    tips: pd.DataFrame,
) -> None:
    train = _with_gaps(tips, seed=1)
    x, y = split_xy(train, TIPS)
    pipeline = build_pipeline(_model("logistic_regression"), TIPS).fit(x, y)
    preprocess = pipeline.named_steps["preprocess"]
    numeric = preprocess.named_transformers_["numeric"].named_steps["impute"]
    assert numeric.statistics_.tolist() == [x["total_bill"].median(), x["size"].median()]
    onehot = preprocess.named_transformers_["categorical"].named_steps["onehot"]
    assert "missing" in onehot.categories_[0].tolist(), "sex had gaps: 'missing' is a category"
    assert "missing" not in onehot.categories_[3].tolist(), "time had none"

    row = x.head(1).copy()
    row[["sex", "size"]] = [None, np.nan]
    names = list(preprocess.get_feature_names_out())
    encoded = dict(zip(names, preprocess.transform(row)[0], strict=True))
    assert encoded["categorical__sex_missing"] == 1.0
    assert encoded["categorical__sex_Female"] == encoded["categorical__sex_Male"] == 0.0
    scaler = preprocess.named_transformers_["numeric"].named_steps["scale"]
    assert encoded["numeric__size"] == pytest.approx(
        (x["size"].median() - scaler.mean_[1]) / scaler.scale_[1]
    )


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_fits_and_predicts_with_missing_values(tips: pd.DataFrame, kind: str) -> None:
    train = _with_gaps(tips.iloc[:180], seed=2)
    # pandas 3 string columns (NaN as missing) to fit, object columns with None to predict.
    for column in TIPS.features.categorical:
        train[column] = train[column].astype("str")
    x, y = split_xy(train, TIPS)
    assert x["sex"].isna().any() and x["size"].isna().any()
    pipeline = build_pipeline(_model(kind), TIPS).fit(x, y)

    new = _with_gaps(tips.iloc[180:], seed=3, none=True)
    x_new, _ = split_xy(new, TIPS)
    assert any(value is None for value in x_new["sex"]), "None, not only NaN, is predicted"
    proba = pipeline.predict_proba(x_new)
    assert np.isfinite(proba).all()
    assert proba.sum(axis=1) == pytest.approx(np.ones(len(x_new)))
    assert set(pipeline.predict(x_new)) <= {0, 1}
    as_nan = x_new.astype({c: object for c in TIPS.features.categorical}).fillna(np.nan)
    np.testing.assert_array_equal(pipeline.predict_proba(as_nan), proba)  # None == NaN


def test_a_column_with_no_value_in_training_keeps_its_place(tips: pd.DataFrame) -> None:
    train = tips.assign(size=np.nan)
    x, y = split_xy(train, TIPS)
    pipeline = build_pipeline(_model("logistic_regression"), TIPS).fit(x, y)
    assert len(pipeline.predict(split_xy(tips.head(5), TIPS)[0])) == 5
    names = pipeline.named_steps["preprocess"].get_feature_names_out()
    assert "numeric__size" in names


def test_rows_with_a_missing_label_are_left_out_of_x_and_y(tips: pd.DataFrame) -> None:
    holdout = tips.head(10).copy()
    holdout.loc[2, "tip"] = np.nan  # the label's numerator
    holdout.loc[5, "total_bill"] = np.nan  # its denominator
    holdout.loc[7, "size"] = np.nan  # a feature only: the row stays
    x, y = split_xy(holdout, TIPS)
    assert x.index.tolist() == y.index.tolist() == [0, 1, 3, 4, 6, 7, 8, 9]
    assert y.tolist() == split_xy(tips.head(10), TIPS)[1].drop(index=[2, 5]).tolist()

    by_column = TIPS.label.model_copy(
        update={"kind": "column", "column": "day", "numerator": None, "denominator": None}
    )
    dataset = TIPS.model_copy(
        update={
            "label": by_column,
            "features": TIPS.features.model_copy(update={"categorical": ["sex"]}),
        }
    )
    holdout.loc[[1, 4], "day"] = [None, np.nan]
    x, y = split_xy(holdout, dataset)
    assert "None" not in y.tolist() and "nan" not in y.tolist()
    assert len(x) == len(y) == 8


def test_evaluate_skips_unlabelled_holdout_rows_and_imputes_the_rest(tips: pd.DataFrame) -> None:
    train, holdout = tips.iloc[:180], _with_gaps(tips.iloc[180:], seed=4).reset_index(drop=True)
    pipeline = build_pipeline(_model("random_forest"), TIPS).fit(*split_xy(train, TIPS))
    labelled = holdout.copy()
    holdout.loc[[0, 3, 9], "tip"] = np.nan
    metrics = evaluate(pipeline, *split_xy(holdout, TIPS))
    assert metrics == evaluate(pipeline, *split_xy(labelled.drop(index=[0, 3, 9]), TIPS))
    assert all(np.isfinite(value) for value in metrics.values())


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """mlflow, tracking to a SQLite file and artifacts in a temp folder; nothing leaves it."""
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
        patch.chdir(root)  # anything written relative to the working folder stays here
        import mlflow

        assert mlflow.get_tracking_uri() == f"sqlite:///{root}/mlflow.db"
        experiment = mlflow.create_experiment(
            "imputation", artifact_location=(root / "artifacts").as_uri()
        )
        mlflow.set_experiment(experiment_id=experiment)
        yield mlflow


@pytest.mark.parametrize("kind", KINDS)
def test_a_model_loaded_back_from_mlflow_imputes_at_prediction_time(
    tips: pd.DataFrame, mlflow_store: Any, kind: str
) -> None:
    mlflow = mlflow_store
    from mlflow.models import infer_signature

    x, y = split_xy(_with_gaps(tips.iloc[:180], seed=5), TIPS)
    pipeline = build_pipeline(_model(kind), TIPS).fit(x, y)
    x_new, _ = split_xy(_with_gaps(tips.iloc[180:], seed=6, none=True), TIPS)
    gaps = x_new[x_new.isna().any(axis=1)]
    assert len(gaps) >= 10
    example = gaps.head(5)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(example, pipeline.predict(example)),
            skops_trusted_types=SKOPS_TRUSTED_TYPES[kind],  # what the retrain passes
            pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
        )
    loaded = mlflow.sklearn.load_model(info.model_uri)
    assert loaded is not pipeline
    np.testing.assert_array_equal(loaded.predict(gaps), pipeline.predict(gaps))
    np.testing.assert_allclose(loaded.predict_proba(gaps), pipeline.predict_proba(gaps))
    every_gap = gaps.assign(size=np.nan, sex=None, day=None, smoker=None)
    assert np.isfinite(loaded.predict_proba(every_gap)).all()


def test_skops_trusts_only_known_types() -> None:
    """The list stays short and reviewed: tree stores and the imputers' numpy dtype."""
    allowed = {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
    assert set(KINDS) == set(SKOPS_TRUSTED_TYPES)
    for kind in KINDS:
        assert set(SKOPS_TRUSTED_TYPES[kind]) <= allowed
        assert "numpy.dtype" in SKOPS_TRUSTED_TYPES[kind]


def test_the_validated_frame_trains_directly(tmp_path: Path) -> None:
    """Nullable columns read by the validator (NaN) go straight into the pipeline."""
    nullable = {
        name: spec.model_copy(update={"nullable": True})
        for name, spec in TIPS.columns.items()
        if name in ("size", "sex")
    }
    dataset = TIPS.model_copy(update={"columns": {**TIPS.columns, **nullable}})
    text = SOURCE_CSV.read_text(encoding="utf-8").splitlines()
    for i in range(1, len(text), 9):  # every ninth row loses its sex, every other one its size
        cells = text[i].split(",")
        cells[2], cells[6] = "NA", (cells[6] if i % 2 else "")
        text[i] = ",".join(cells)
    path = tmp_path / "gappy.csv"
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    frame = validate_csv(path, dataset).frame
    assert frame["sex"].isna().sum() == len(range(1, len(text), 9))
    pipeline = build_pipeline(_model("hist_gradient_boosting"), dataset)
    pipeline.fit(*split_xy(frame, dataset))
    assert len(pipeline.predict(split_xy(frame, dataset)[0])) == len(frame)
