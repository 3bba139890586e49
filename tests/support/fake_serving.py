"""The serve's app in-process for unit tests: a fake registry and a real uvicorn on a port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import uvicorn
from mlflow.exceptions import MlflowException

from arrivals.harness import wait_for
from serving.app import ServeState, build_app
from serving.models import VersionRef

# One row of the tips features, as a client sends it (JSON numbers and strings).
FEATURE_ROW = {
    "total_bill": 16.99,
    "size": 2,
    "sex": "Female",
    "smoker": "No",
    "day": "Sun",
    "time": "Dinner",
}


class FakeSource:
    """The registry as `ServedModels` reads it. `champion_version` names the champion (None:
    none yet); `newest_version` the newest version (default: the champion); `down` makes
    every call fail as MLflow's client does when the server is away."""

    def __init__(self, pipelines: dict[str, Any], champion: str | None) -> None:
        self.pipelines = pipelines
        self.champion_version = champion
        self.newest_version: str | None = None
        self.decisions: dict[str, str] = {}
        self.loads: list[str] = []
        self.logged: list[tuple[str, dict[str, float], int]] = []
        self.down = False

    def _ref(self, version: str | None) -> VersionRef | None:
        if self.down:
            raise MlflowException("API request to the registry failed (connection refused)")
        if version is None:
            return None
        return VersionRef(version, f"run-{version}", self.decisions.get(version, "promoted"))

    def champion(self) -> VersionRef | None:
        return self._ref(self.champion_version)

    def newest(self) -> VersionRef | None:
        return self._ref(self.newest_version or self.champion_version)

    def load(self, ref: VersionRef) -> Any:
        self.loads.append(ref.version)
        return self.pipelines[ref.version]

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        if self.down:
            raise MlflowException("API request to the registry failed (connection refused)")
        self.logged.append((run_id, metrics, step))


class ConstantModel:
    """Predicts its own version for every row: an answer shows which model made it."""

    def __init__(self, version: str) -> None:
        self.version = version

    def predict(self, features: Any) -> np.ndarray:
        return np.full(len(features), self.version, dtype=object)


@contextmanager
def running_app(state: ServeState, port: int) -> Iterator[uvicorn.Server]:
    """`build_app(state)` under uvicorn on 127.0.0.1:`port` until the block ends."""
    config = uvicorn.Config(
        build_app(state),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=15, what="the test serve", every=0.02)
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=15)
