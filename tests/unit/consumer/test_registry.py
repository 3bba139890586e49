"""The MLflow registry (consumer.registry.MlflowRegistry) against a local sqlite tracking
store: no server. The store's schema is created once per module (MLflow's migrations take
seconds) and copied for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from consumer.registry import CHAMPION, PREVIOUS_CHAMPION, MlflowRegistry, ModelRun, NewFile

MODEL = "tips-model"
EXPERIMENT = "tips"


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty sqlite tracking store to copy."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    MlflowRegistry(f"sqlite:///{path}", MODEL, EXPERIMENT).client.search_experiments()
    return path


@pytest.fixture
def registry(empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A registry on a fresh copy of the store; artifacts under tmp_path."""
    monkeypatch.chdir(tmp_path)  # a sqlite store puts run artifacts under ./mlruns
    store = tmp_path / "mlflow.db"
    shutil.copyfile(empty_store, store)
    return MlflowRegistry(f"sqlite:///{store}", MODEL, EXPERIMENT)


def _model() -> tuple[Pipeline, pd.DataFrame]:
    rng = np.random.default_rng(7)
    x = pd.DataFrame({"bill": rng.uniform(5, 50, 40), "size": rng.integers(1, 6, 40)})
    y = (x["bill"] > 20).astype(int)
    return Pipeline([("model", LogisticRegression())]).fit(x, y), x


def _register(registry: MlflowRegistry, flow_run_id: str = "run-1") -> str:
    """A version as a retrain logs it (the model, a new file, artifacts); its number."""
    pipeline, x = _model()
    registered = registry.log_and_register(
        ModelRun(
            pipeline=pipeline,
            x_example=x.head(5),
            params={"model_kind": "logistic", "train_rows": len(x)},
            metrics={"roc_auc": 0.91, "accuracy": 0.8},
            new_files=[NewFile("b1.csv", "ab" * 32, Path("/data/archive/b1.csv"), x)],
            tags={"arrivals.run_name": "retrain-x", "arrivals.flow_run_id": flow_run_id},
            artifacts={"lineage.json": {"files": [{"name": "b1.csv", "new": True}]}},
            figures={},
            trusted_types=[],
        )
    )
    return registered.version


def _bare_version(registry: MlflowRegistry, flow_run_id: str, tags: dict[str, str]) -> str:
    """A version without a logged model (quick): a run tagged with its flow run, registered."""
    client = registry.client
    experiment = client.get_experiment_by_name(EXPERIMENT) or client.get_experiment(
        client.create_experiment(EXPERIMENT)
    )
    run = client.create_run(experiment.experiment_id, tags={"arrivals.flow_run_id": flow_run_id})
    if not client.search_registered_models(f"name = '{MODEL}'"):
        client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id)
    registry.tag_version(str(version.version), tags)
    return str(version.version)


def test_a_logged_version_carries_the_run_and_loads_back(registry: MlflowRegistry) -> None:
    assert registry.champion() is None
    version = _register(registry)
    assert version == "1"
    client = registry.client
    run = client.get_run(client.get_model_version(MODEL, version).run_id)
    assert run.data.params == {"model_kind": "logistic", "train_rows": "40"}
    assert run.data.metrics == {"roc_auc": 0.91, "accuracy": 0.8}
    assert run.data.tags["arrivals.flow_run_id"] == "run-1"
    assert run.info.run_name == "retrain-x"
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["b1.csv"]
    assert registry.version_metrics(version) == {"roc_auc": 0.91, "accuracy": 0.8}
    _pipeline, x = _model()
    loaded = registry.load_model(version)
    assert loaded.predict(x).tolist() == _pipeline.predict(x).tolist()


def test_the_champion_alias_moves_and_keeps_the_one_it_replaced(registry: MlflowRegistry) -> None:
    first = _bare_version(registry, "run-1", {"arrivals.decision": "promoted"})
    second = _bare_version(registry, "run-2", {"arrivals.decision": "promoted"})
    registry.move_champion(first, None)
    assert _aliases(registry) == {CHAMPION: first}
    registry.move_champion(second, first)
    assert _aliases(registry) == {CHAMPION: second, PREVIOUS_CHAMPION: first}
    champion = registry.champion()
    assert champion is not None
    assert (champion.version, champion.tags) == (second, {"arrivals.decision": "promoted"})


def test_moving_the_champion_onto_itself_sets_no_previous(registry: MlflowRegistry) -> None:
    first = _bare_version(registry, "run-1", {})
    registry.move_champion(first, None)
    registry.move_champion(first, first)
    assert _aliases(registry) == {CHAMPION: first}


def test_a_dead_runs_unfinished_or_returned_versions_are_discarded_the_rest_kept(
    registry: MlflowRegistry,
) -> None:
    finished = {"arrivals.decision": "kept champion"}
    untagged = _bare_version(registry, "dead", {})
    tagged_returned = _bare_version(registry, "dead", finished)
    tagged_kept = _bare_version(registry, "dead", finished)
    champion = _bare_version(registry, "dead", {})  # unfinished, but people use it
    elsewhere = _bare_version(registry, "alive", {})
    registry.move_champion(champion, None)
    asked: list[str] = []

    def came_back(version: str) -> bool:
        asked.append(version)
        return version == tagged_returned

    discarded = registry.discard_versions_of({"dead"}, came_back)

    assert sorted(discarded) == sorted([untagged, tagged_returned])
    left = {str(v.version) for v in registry.client.search_model_versions(f"name = '{MODEL}'")}
    assert left == {tagged_kept, champion, elsewhere}
    assert tagged_returned in asked and tagged_kept in asked


def test_no_dead_run_discards_nothing(registry: MlflowRegistry) -> None:
    version = _bare_version(registry, "run-1", {})
    assert registry.discard_versions_of({"another"}, lambda v: True) == []
    assert str(registry.client.get_model_version(MODEL, version).version) == version


def _aliases(registry: MlflowRegistry) -> dict[str, str]:
    # str(): a database store gives version numbers as ints.
    return {k: str(v) for k, v in registry.client.get_registered_model(MODEL).aliases.items()}
