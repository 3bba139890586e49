"""Fakes for the retrain's external systems (a model registry, an event emitter) and a rig
that runs retrain rounds with them in one process."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from consumer import retrain
from consumer.context import RetrainContext
from consumer.ingest import ingest
from consumer.registry import Champion, Registered
from consumer.verdict import judge_round
from shared.ledger import Ledger
from shared.settings import Settings


@dataclass
class FakeRegistry:
    """An in-memory model registry with MLflow's version/alias/tag semantics."""

    models: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    run_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    figures: list[tuple[str, str]] = field(default_factory=list)

    def champion(self) -> Champion | None:
        version = self.aliases.get("champion")
        if version is None:
            return None
        return Champion(version, f"run-{version}", dict(self.metrics[version]))

    def log_and_register(self, **run: Any) -> Registered:
        version = str(len(self.models) + 1)
        self.models[version] = run["pipeline"]
        self.metrics[version] = dict(run["metrics"])
        self.run_tags[version] = dict(run["tags"])
        self.artifacts[version] = dict(run["artifacts"])
        self.tags[version] = {}
        return Registered(f"run-{version}", version, "0")

    def discard_versions_of(self, flow_run_ids: set[str], came_back) -> list[str]:
        return []

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        self.tags[version].update(tags)

    def move_champion(self, version: str, previous: str | None) -> None:
        if previous is not None and previous != version:
            self.aliases["previous_champion"] = previous
        self.aliases["champion"] = version

    def version_metrics(self, version: str) -> dict[str, float]:
        return dict(self.metrics[version])

    def log_figure(self, run_id: str, figure: Any, name: str) -> None:
        self.figures.append((run_id, name))

    def load_model(self, version: str) -> Any:
        return self.models[version]


class FakeEmitter:
    """Records every event it is asked to deliver."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def emit(self, events) -> None:
        self.sent.extend(events)

    def named(self, name: str) -> list[Any]:
        return [e for e in self.sent if e.event == name]


class Rig:
    """Drops files through the ledger and runs rounds the way the retrain flow does."""

    def __init__(self, settings: Settings) -> None:
        settings.dirs.ensure()
        self.settings = settings
        self.ledger = Ledger(settings.ledger_url)
        self.registry = FakeRegistry()
        self.emitter = FakeEmitter()
        self.rounds = 0

    def drop(self, name: str, frame: pd.DataFrame) -> str:
        path = self.settings.dirs.inbox / name
        text = frame.to_csv(index=False)
        path.write_text(text)
        sha = hashlib.sha256(text.encode()).hexdigest()
        arrival = self.ledger.record_arrival(
            name=name, path=str(path), size=path.stat().st_size, sha256=sha, detected_via="push"
        )
        self.ledger.mark_announced(arrival.id)
        return sha

    def round(self) -> dict:
        self.rounds += 1
        ctx = RetrainContext(
            settings=self.settings,
            ledger=self.ledger,
            emitter=self.emitter,
            run_id=f"run-{self.rounds}",
            registry=self.registry,
        )
        claimed = retrain.claim(ctx)
        accepted = [a for r in claimed if (a := ingest(ctx, r))]
        judged = judge_round(ctx, retrain.train(ctx, accepted), self.registry, round_no=1)
        if judged.trained is None:
            return retrain.only_suspects(ctx, judged, accepted)
        return retrain.register_and_judge(ctx, judged, self.registry)
