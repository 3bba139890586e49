"""What every stage of one retrain run shares: settings, ledger, emitter, the run's identity."""

from __future__ import annotations

import contextlib
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from consumer.registry import MlflowRegistry, Registry
from shared import events
from shared.alerts import Alert, NoNotifier, Notifier

if TYPE_CHECKING:
    from shared.ledger import Ledger
    from shared.settings import Settings

log = logging.getLogger("consumer.retrain")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StageTimer(Protocol):
    """Times the named stages of a retrain (the benchmark injects one; the product needs none)."""

    def stage(self, name: str) -> AbstractContextManager[None]: ...


class NoTimer:
    """Times nothing: the default."""

    def stage(self, name: str) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


@dataclass
class RetrainContext:
    """What every stage of one retrain run shares."""

    settings: Settings
    ledger: Ledger
    emitter: events.Emitter
    run_id: str
    run_name: str = ""
    trigger_event_id: str | None = None
    logger: Any = field(default=log)
    registry: Registry | None = None  # built on first use (importing MLflow costs seconds)
    timer: StageTimer = field(default_factory=NoTimer)
    notifier: Notifier = field(default_factory=NoNotifier)  # alerts.urls; none by default

    def model_registry(self) -> Registry:
        """The registry of this run: the injected one, else MLflow at the configured URL."""
        if self.registry is None:
            self.registry = MlflowRegistry(
                self.settings.mlflow_url, self.settings.model.name, self.settings.dataset.name
            )
        return self.registry

    @property
    def run_url(self) -> str:
        return f"{self.settings.prefect_ui_url}/runs/flow-run/{self.run_id}"

    def run_related(self) -> dict[str, str]:
        return {
            "prefect.resource.id": f"prefect.flow-run.{self.run_id}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": self.run_name,
        }

    def emit(self, *out: events.Event) -> None:
        """Send events; a delivery failure is logged, never raised."""
        try:
            self.emitter.emit(out)
        except events.EventNotDelivered as error:
            # The ledger and the registry are the record; a lost notification must not undo
            # them (failing here would release the claims and train the same files twice).
            self.logger.error("Events %s not delivered: %s", [e.event for e in out], error)

    def notify(self, alert: Alert) -> None:
        """Tell people (alerts.urls); the notifier logs a failure and never raises it."""
        self.notifier.send(alert)
