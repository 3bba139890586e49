"""Stuck files: one alert per file that waits for a decision longer than it should.

A file is pending from detection until a retrain trains, rejects or holds it out. One still
pending after `alerts.stuck_after_seconds` is reported once (the ledger notes it before the
send, so a receiver that is down costs that alert, never a flood of retries).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from shared.alerts import Notifier, stuck_alert
from shared.ledger_alerts import STUCK
from shared.ledger_schema import FileRecord

log = logging.getLogger("arrivals.sensor")


class StuckLedger(Protocol):
    def stuck_unalerted(self, older_than_seconds: float) -> list[FileRecord]: ...

    def mark_alerted(self, kind: str, sha256: str, detected_at: float) -> bool: ...


class StuckFiles:
    """Finds pending files past the threshold and alerts about each once."""

    def __init__(
        self,
        ledger: StuckLedger,
        notifier: Notifier,
        after_seconds: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.notifier = notifier
        self.after_seconds = after_seconds
        self.clock = clock

    def sweep(self) -> int:
        """Alert about every newly stuck file; how many alerts went out."""
        sent = 0
        for record in self.ledger.stuck_unalerted(self.after_seconds):
            if not self.ledger.mark_alerted(STUCK, record.sha256, record.detected_at):
                continue  # another sweep took it between the read and the note
            alert = stuck_alert(record.name, record.state, record.detected_at, self.clock())
            log.warning("%s: %s", alert.title, alert.body)
            self.notifier.send(alert)
            sent += 1
        return sent
