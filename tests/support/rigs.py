"""Rigs: a real component on a tmp home, wired to the fakes around it.

`SensorRig` runs an InboxSensor step by step on a fake clock; `RetrainRig` drops files
through the ledger and runs retrain rounds the way the retrain flow does, in one process.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from automations.delivery import StoreCheck
from automations.sensor import InboxSensor
from consumer import retrain
from consumer.commit import register_and_judge
from consumer.context import RetrainContext
from consumer.ingest import ingest
from consumer.verdict import judge_round
from shared.ledger import Ledger
from shared.settings import Settings
from tests.support.data import ROWS
from tests.support.fakes import (
    FakeClock,
    FakeEmitter,
    FakeEventStore,
    FakeNotifier,
    FakeObserver,
    FakeRegistry,
    FakeRunStates,
    Journal,
    JournalingLedger,
)


class SensorRig:
    """A sensor on a tmp home, and the fakes around it."""

    def __init__(
        self, settings: Settings, tmp_path: Path, run_states: FakeRunStates | None = None
    ) -> None:
        self.settings = settings
        self.clock = FakeClock(0.0)
        self.ledger_clock = FakeClock(1_000_000.0)
        self.ledger = Ledger(settings.ledger_url, clock=self.ledger_clock)
        self.emitter = FakeEmitter()
        self.notifier = FakeNotifier()
        self.store = FakeEventStore(self.emitter)
        self.observers: list[FakeObserver] = []
        self.sensor = InboxSensor(
            settings,
            self.ledger,
            self.emitter,
            clock=self.clock,
            observer_factory=self._observer,
            run_states=run_states,
            notifier=self.notifier,
            store_check=StoreCheck(self.store, self.emitter),
        )
        self.inbox = settings.dirs.inbox

    def _observer(self) -> FakeObserver:
        observer = FakeObserver()
        self.observers.append(observer)
        return observer

    @property
    def settle(self) -> float:
        return self.settings.sensor.settle_seconds

    def step(self, advance: float = 0.0) -> None:
        self.clock.now += advance
        self.sensor.step(self.clock.now)

    def detect(self) -> None:
        """Scan now, then step once the scanned files have settled."""
        self.sensor.scan(self.clock.now)
        self.step(self.settle + 0.01)

    def drop(self, name: str, data: bytes = ROWS) -> Path:
        path = self.inbox / name
        path.write_bytes(data)
        return path


class RetrainRig:
    """Drops files through the ledger and runs rounds the way the retrain flow does."""

    def __init__(self, settings: Settings) -> None:
        settings.dirs.ensure()
        self.settings = settings
        self.ledger = Ledger(settings.ledger_url)
        self.journal = Journal()
        self.registry = FakeRegistry(self.journal)
        self.emitter = FakeEmitter(self.journal)
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

    def context(self, run_id: str | None = None) -> RetrainContext:
        """A run's context on the rig's ledger (its writes journaled), registry and emitter."""
        if run_id is None:
            self.rounds += 1
            run_id = f"run-{self.rounds}"
        return RetrainContext(
            settings=self.settings,
            ledger=JournalingLedger(self.ledger, self.journal),  # type: ignore[arg-type]
            emitter=self.emitter,
            run_id=run_id,
            registry=self.registry,
        )

    def judged(self, ctx: RetrainContext):
        """Claim, ingest, train and judge, as the flow does: the round's verdict."""
        claimed = retrain.claim(ctx)
        accepted = [a for r in claimed if (a := ingest(ctx, r))]
        return judge_round(ctx, retrain.train(ctx, accepted), self.registry, round_no=1), accepted

    def round(self, run_id: str | None = None) -> dict:
        ctx = self.context(run_id)
        judged, accepted = self.judged(ctx)
        if judged.trained is None:
            return retrain.only_suspects(ctx, judged, accepted)
        return register_and_judge(ctx, judged, self.registry)
