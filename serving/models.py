"""Which model versions are served, where they come from, and the swap that replaces them.

The served pair (champion, and the challenger when shadowing) is one immutable value. A
request reads it once and finishes on what it read; a swap builds the next value beside it
(loading the model first) and replaces the reference in one assignment. So a request never
waits on a load and never sees half a swap.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
DECISION_TAG = "arrivals.decision"
_KEPT_LOADED = 4  # models kept in memory: a rollback to a recent champion swaps at once


@dataclass(frozen=True)
class VersionRef:
    """A registered model version, as the registry describes it."""

    version: str
    run_id: str
    decision: str  # its `arrivals.decision` tag ("" while undecided)


@dataclass(frozen=True)
class LoadedModel:
    """A version loaded and ready to predict."""

    ref: VersionRef
    pipeline: Any
    loaded_at: str  # ISO time of the swap that made it live

    @property
    def version(self) -> str:
        return self.ref.version


@dataclass(frozen=True)
class Served:
    """What answers requests now: the champion, and the challenger scored in its shadow."""

    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None


class ModelSource(Protocol):
    """The registry as the server needs it (MLflow in production, a fake in unit tests)."""

    def champion(self) -> VersionRef | None: ...

    def newest(self) -> VersionRef | None: ...

    def load(self, ref: VersionRef) -> Any: ...

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None: ...


class MlflowSource:
    """The registered model's `champion` alias and versions; models from the home, else MLflow.

    The retrain exports every version to `<home>/models/version-N.joblib` before it moves the
    alias, so on the training host a swap reads a local file; elsewhere it downloads.
    """

    def __init__(self, tracking_uri: str, model_name: str, models_dir: Path) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.model_name = model_name
        self.models_dir = models_dir

    def _ref(self, version: Any) -> VersionRef:
        tags = dict(version.tags or {})
        return VersionRef(str(version.version), version.run_id, tags.get(DECISION_TAG, ""))

    def champion(self) -> VersionRef | None:
        from mlflow.exceptions import MlflowException

        try:
            version = self.client.get_model_version_by_alias(self.model_name, CHAMPION_ALIAS)
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None  # no model, or no champion yet
            raise
        return self._ref(version)

    def newest(self) -> VersionRef | None:
        versions = self.client.search_model_versions(
            f"name = '{self.model_name}'", max_results=1, order_by=["version_number DESC"]
        )
        return self._ref(versions[0]) if versions else None

    def load(self, ref: VersionRef) -> Any:
        import joblib

        local = self.models_dir / f"version-{ref.version}.joblib"
        if local.exists():
            return joblib.load(local)  # written by our own retrain, never a user's file
        import mlflow.sklearn

        return mlflow.sklearn.load_model(f"models:/{self.model_name}/{ref.version}")

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, value, step=step)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class ServedModels:
    """The served pair and the loads behind it. Reads are lock-free; swaps are serialized."""

    def __init__(self, source: ModelSource, *, shadow: bool, clock: Callable[[], str] = now_iso):
        self.source = source
        self.shadow = shadow
        self.clock = clock
        self.current = Served()  # replaced whole: one reference assignment is the swap
        self._loaded: OrderedDict[str, Any] = OrderedDict()
        self._swap_lock = threading.Lock()

    def _pipeline(self, ref: VersionRef) -> Any:
        """The version's model, from memory or loaded now (outside any request's path)."""
        if ref.version in self._loaded:
            self._loaded.move_to_end(ref.version)
            return self._loaded[ref.version]
        pipeline = self.source.load(ref)
        self._loaded[ref.version] = pipeline
        while len(self._loaded) > _KEPT_LOADED:
            self._loaded.popitem(last=False)
        return pipeline

    def _loaded_as(self, ref: VersionRef | None, now: LoadedModel | None) -> LoadedModel | None:
        if ref is None:
            return None
        if now is not None and now.ref == ref:
            return now  # the same version with the same decision: nothing to load
        return LoadedModel(ref, self._pipeline(ref), self.clock())

    def refresh(self) -> Served:
        """Ask the registry what to serve; load what changed; swap. Raises what the registry
        raises (the caller keeps serving what it has and asks again later)."""
        with self._swap_lock:
            before = self.current
            champion_ref = self.source.champion()
            champion = self._loaded_as(champion_ref, before.champion)
            challenger = None
            if self.shadow and champion_ref is not None:
                newest = self.source.newest()
                # The newest version, when it came after the champion and lost to it (or is
                # still being judged): what the next promotion would serve.
                if newest is not None and int(newest.version) > int(champion_ref.version):
                    challenger = self._loaded_as(newest, before.challenger)
            after = Served(champion, challenger)
            if after != before:
                self.current = after
                log.info(
                    "Serving %s%s",
                    f"v{champion.version}" if champion else "no champion",
                    f", shadow v{challenger.version}" if challenger else "",
                )
            return self.current
