"""The model registry behind a small interface: MLflow tracking + registry over HTTP.

`mlflow` costs seconds to import (pandas a quarter second), so it is imported inside the
methods that need it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from sklearn.pipeline import Pipeline

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"  # one-step rollback target


@dataclass(frozen=True)
class Champion:
    version: str
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)  # the version's (its `arrivals.*` decision)


@dataclass(frozen=True)
class NewFile:
    """A file this run trains on for the first time (logged as an MLflow dataset input)."""

    name: str
    sha256: str
    path: Path
    frame: pd.DataFrame


@dataclass(frozen=True)
class ModelRun:
    """Everything one registry run logs: the model, what it was fit on, how it scored."""

    pipeline: Pipeline
    x_example: pd.DataFrame
    params: dict[str, Any]
    metrics: dict[str, float]
    new_files: list[NewFile]
    tags: dict[str, str]
    artifacts: dict[str, Any]
    figures: dict[str, Figure]
    trusted_types: list[str]


@dataclass(frozen=True)
class Registered:
    run_id: str
    version: str
    experiment_id: str


class Registry(Protocol):
    """What a retrain needs of a model registry (MLflow in production, a fake in tests)."""

    def champion(self) -> Champion | None: ...

    def log_and_register(self, run: ModelRun) -> Registered: ...

    def discard_versions_of(
        self, flow_run_ids: set[str], came_back: Callable[[str], bool]
    ) -> list[str]: ...

    def tag_version(self, version: str, tags: dict[str, str]) -> None: ...

    def move_champion(self, version: str, previous: str | None) -> None: ...

    def version_metrics(self, version: str) -> dict[str, float]: ...

    def log_figure(self, run_id: str, figure: Figure, name: str) -> None: ...

    def load_model(self, version: str) -> Pipeline: ...


class MlflowRegistry:
    """Logs retrain runs, registers versions and moves aliases on one registered model."""

    def __init__(self, tracking_uri: str, model_name: str, experiment: str) -> None:
        import mlflow
        from mlflow import MlflowClient

        self._mlflow = mlflow
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        self.model_name = model_name
        self.experiment = experiment

    def champion(self) -> Champion | None:
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version_by_alias(self.model_name, CHAMPION)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise
        metrics = self.client.get_run(version.run_id).data.metrics
        # str(): a database store gives the number as an int, the HTTP API as text.
        return Champion(str(version.version), version.run_id, dict(metrics), dict(version.tags))

    def log_and_register(self, run: ModelRun) -> Registered:
        """One MLflow run: params, metrics, dataset inputs, JSON artifacts, the model, a version."""
        mlflow = self._mlflow
        from mlflow.models import infer_signature

        mlflow.set_experiment(self.experiment)
        with mlflow.start_run(run_name=run.tags.get("arrivals.run_name")) as active:
            mlflow.set_tags(run.tags)
            mlflow.log_params(run.params)
            mlflow.log_metrics(run.metrics)
            for new in run.new_files:
                dataset = mlflow.data.from_pandas(
                    new.frame, source=str(new.path), name=new.name, digest=new.sha256[:16]
                )
                mlflow.log_input(dataset, context="training")
            for name, content in run.artifacts.items():
                mlflow.log_dict(content, name)
            for name, figure in run.figures.items():
                mlflow.log_figure(figure, name)
            info = mlflow.sklearn.log_model(
                run.pipeline,
                name="model",
                signature=infer_signature(run.x_example, run.pipeline.predict(run.x_example)),
                registered_model_name=self.model_name,
                skops_trusted_types=run.trusted_types,
                # Named here, so MLflow skips inferring them (a `uv export`, ~2 s a run).
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(),
            )
        return Registered(
            active.info.run_id, str(info.registered_model_version), active.info.experiment_id
        )

    def discard_versions_of(
        self, flow_run_ids: set[str], came_back: Callable[[str], bool]
    ) -> list[str]:
        """Delete the half-finished versions of retrain runs that died holding their files.

        A version is half-finished when it lacks its `arrivals.decision` tag, or when its
        files came back to be trained again (`came_back(version)`: the run died after tagging
        but before recording them as trained). Keeping it would count those files twice. A
        version holding an alias is kept.
        """
        discarded: list[str] = []
        for flow_run_id in sorted(flow_run_ids):
            runs = self._mlflow.search_runs(
                search_all_experiments=True,
                filter_string=f"tags.`arrivals.flow_run_id` = '{flow_run_id}'",
                output_format="list",
            )
            for run in runs:
                for version in self.client.search_model_versions(f"run_id = '{run.info.run_id}'"):
                    number = str(version.version)  # an int from a database store
                    full = self.client.get_model_version(self.model_name, number)
                    unfinished = "arrivals.decision" not in full.tags
                    if not full.aliases and (unfinished or came_back(number)):
                        self.client.delete_model_version(self.model_name, number)
                        discarded.append(number)
        return discarded

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, value)

    def move_champion(self, version: str, previous: str | None) -> None:
        """Point `champion` at `version`; the replaced one keeps `previous_champion`."""
        if previous is not None and previous != version:
            self.client.set_registered_model_alias(self.model_name, PREVIOUS_CHAMPION, previous)
        self.client.set_registered_model_alias(self.model_name, CHAMPION, version)

    def version_metrics(self, version: str) -> dict[str, float]:
        run_id = self.client.get_model_version(self.model_name, version).run_id
        return dict(self.client.get_run(run_id).data.metrics)

    def log_figure(self, run_id: str, figure: Figure, name: str) -> None:
        self.client.log_figure(run_id, figure, name)

    def load_model(self, version: str) -> Pipeline:
        return self._mlflow.sklearn.load_model(f"models:/{self.model_name}/{version}")
