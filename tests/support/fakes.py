"""Fakes for the systems around the sensor and the retrain: a clock, an event emitter, a
filesystem observer, the Prefect run states, a model registry and a notifier.

A `Journal` shared by the fakes (and a `JournalingLedger` around a real ledger) records the
order in which a retrain writes to each system.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from consumer.registry import Champion, ModelRun, Registered
from shared import events
from shared.alerts import Alert
from shared.events import EventNotDelivered
from shared.ledger import Ledger


class FakeClock:
    """A callable clock that only moves when told to (`advance`, or set `now`)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Journal(list):
    """The writes of a retrain, in order, as "system.method" strings."""

    def write(self, entry: str) -> None:
        self.append(entry)


class FakeEmitter:
    """Records what it is asked to deliver; `fail` decides, per batch, whether it is down.

    Every batch is noted in `attempts` (and as "events.emit" in the journal); a batch that
    does not fail must serialise as ConfirmedEmitter would POST it, and lands in `delivered`.
    """

    def __init__(self, journal: Journal | None = None) -> None:
        self.attempts: list[events.Event] = []
        self.delivered: list[events.Event] = []
        self.fail: Callable[[Sequence[events.Event]], bool] = lambda _events: False
        self.journal = journal if journal is not None else Journal()

    def emit(self, batch: Sequence[events.Event]) -> None:
        self.journal.write("events.emit")
        batch = list(batch)
        self.attempts.extend(batch)
        if self.fail(batch):
            raise EventNotDelivered("Prefect API unreachable (fake)")
        for event in batch:
            json.dumps(event.to_json())  # what ConfirmedEmitter would POST must serialise
        self.delivered.extend(batch)

    def named(self, name: str, *, attempted: bool = False) -> list[events.Event]:
        source = self.attempts if attempted else self.delivered
        return [event for event in source if event.event == name]


class FakeEventStore:
    """What a `FakeEmitter` delivered, as Prefect's event store holds it.

    `lose(event_id)` drops the next delivery of that id after the API accepted it, as a
    broker restart does before the persister writes; `down` makes every look-up fail.
    """

    def __init__(self, emitter: FakeEmitter) -> None:
        self.emitter = emitter
        self.down = False
        self.lookups: list[list[str]] = []
        self._lost: dict[str, int] = {}

    def lose(self, event_id: str, times: int = 1) -> None:
        self._lost[event_id] = self._lost.get(event_id, 0) + times

    def stored(self, ids: Sequence[str], since: Any) -> set[str]:
        if self.down:
            raise EventNotDelivered("Prefect API unreachable (fake)")
        self.lookups.append(list(ids))
        deliveries: dict[str, int] = {}
        for event in self.emitter.delivered:
            deliveries[event.id] = deliveries.get(event.id, 0) + 1
        return {i for i in ids if deliveries.get(i, 0) > self._lost.get(i, 0)}


class FakeObserver:
    """A watchdog observer that watches nothing: it remembers what it was told."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[object, str, bool]] = []
        self.alive = False
        self.stopped = False

    def schedule(self, handler, path: str, recursive: bool = False) -> None:
        self.scheduled.append((handler, path, recursive))

    def start(self) -> None:
        self.alive = True

    def is_alive(self) -> bool:
        return self.alive

    def stop(self) -> None:
        self.stopped, self.alive = True, False

    def join(self, timeout: float | None = None) -> None:
        pass


class FakeRunStates:
    """Which flow runs have ended, as the Prefect API would say; remembers who was asked."""

    def __init__(self) -> None:
        self.ended_runs: set[str] = set()
        self.asked: list[str] = []

    def ended(self, flow_run_id: str) -> bool:
        self.asked.append(flow_run_id)
        return flow_run_id in self.ended_runs


class RegistryDown(ConnectionError):
    """What a fake registry raises where a test tells it to fail (an MLflow outage)."""


# The ledger's writes; its reads (files, get, files_of_version, ...) are not journaled.
LEDGER_WRITES = frozenset(
    {
        "claim_pending",
        "release_claims",
        "mark_rejected",
        "mark_suspect",
        "mark_trained",
        "assign_first_version",
        "record_lineage",
        "set_stored_path",
        "set_note",
    }
)


class JournalingLedger:
    """A real ledger whose writes are also noted in a journal."""

    def __init__(self, ledger: Ledger, journal: Journal) -> None:
        self._ledger = ledger
        self._journal = journal

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._ledger, name)
        if name not in LEDGER_WRITES:
            return attribute

        def journaled(*args: Any, **kwargs: Any) -> Any:
            self._journal.write(f"ledger.{name}")
            return attribute(*args, **kwargs)

        return journaled


@dataclass
class FakeRegistry:
    """An in-memory model registry with MLflow's version/alias/tag semantics.

    `fail_on`: a method name that raises `RegistryDown` (before doing anything) when called.
    """

    journal: Journal = field(default_factory=Journal)
    fail_on: str | None = None
    deleted: list[str] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    run_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    figures: list[tuple[str, str]] = field(default_factory=list)

    def _call(self, method: str) -> None:
        self.journal.write(f"registry.{method}")
        if method == self.fail_on:
            raise RegistryDown(f"registry unreachable during {method}")

    def champion(self) -> Champion | None:
        version = self.aliases.get("champion")
        if version is None:
            return None
        return Champion(version, f"run-{version}", dict(self.metrics[version]))

    def log_and_register(self, run: ModelRun) -> Registered:
        self._call("log_and_register")
        version = str(len(self.models) + len(self.deleted) + 1)  # numbers are never reused
        self.models[version] = run.pipeline
        self.metrics[version] = dict(run.metrics)
        self.run_tags[version] = dict(run.tags)
        self.artifacts[version] = dict(run.artifacts)
        self.tags[version] = {}
        return Registered(f"run-{version}", version, "0")

    def discard_versions_of(
        self, flow_run_ids: set[str], came_back: Callable[[str], bool]
    ) -> list[str]:
        """As MlflowRegistry: a dead run's version without an alias, unfinished or whose
        files came back, is deleted."""
        self._call("discard_versions_of")
        discarded = []
        for version, tags in list(self.run_tags.items()):
            if tags.get("arrivals.flow_run_id") not in flow_run_ids:
                continue
            unfinished = "arrivals.decision" not in self.tags[version]
            held = version in self.aliases.values()
            if not held and (unfinished or came_back(version)):
                for table in (self.models, self.metrics, self.tags, self.run_tags):
                    del table[version]
                self.deleted.append(version)
                discarded.append(version)
        return discarded

    def tag_version(self, version: str, tags: dict[str, str]) -> None:
        self._call("tag_version")
        self.tags[version].update(tags)

    def move_champion(self, version: str, previous: str | None) -> None:
        self._call("move_champion")
        if previous is not None and previous != version:
            self.aliases["previous_champion"] = previous
        self.aliases["champion"] = version

    def version_metrics(self, version: str) -> dict[str, float]:
        return dict(self.metrics[version])

    def log_figure(self, run_id: str, figure: Any, name: str) -> None:
        self._call("log_figure")
        self.figures.append((run_id, name))

    def load_model(self, version: str) -> Any:
        return self.models[version]


class FakeNotifier:
    """Records the alerts it is asked to send; `fail` makes it report them undelivered."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self.fail = False

    def send(self, alert: Alert) -> bool:
        self.sent.append(alert)
        return not self.fail
