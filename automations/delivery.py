"""The arrival events the sensor sends, and the check that Prefect stored each one.

Prefect answers 204 to `POST /events` once an event is on its message broker. The event
persister writes it to the database a few seconds later (every 5 s by default), so a broker
restart (Redis, in the scale profile) or a server killed in between loses an event the API
had accepted: the chaos soak's finding 6. The file itself is safe (the ledger holds it and a
run claims it anyway), but the UI, the event feed and the file's lineage miss it.

`StoreCheck` therefore looks each accepted arrival event up by id after a while and posts it
again, with the same id, while it is missing. Copies are harmless: the event store and the
trigger service both drop an id they have seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared import events
from shared.ledger import Arrival, Disposition, Ledger

log = logging.getLogger("arrivals.sensor")

# Three of Prefect's default persister flushes (5 s): a stored event is found on the first
# look unless the persister is far behind, which costs one harmless copy.
CHECK_AFTER_SECONDS = 15.0
# After each resend the next look waits twice as long (30 s, 60 s, ... 960 s): about half an
# hour of trying, enough to outlast a broker restart or a server's backlog; then the sensor
# gives up and says so (the file is safe either way: the ledger holds it).
MAX_RESENDS = 6
# On start, arrivals announced this recently are checked too: the last run of the sensor
# may have stopped before it could check them.
RECHECK_ON_START_SECONDS = 600.0


def arrival_event(ledger: Ledger, arrival: Arrival, inbox: str) -> events.Event:
    """The event for one arrival: arrived, duplicate or rejected (refused at the door)."""
    payload = {
        "name": arrival.name,
        "path": arrival.path,
        "size": arrival.size,
        "sha256": arrival.sha256,
        "detected_via": arrival.detected_via,
    }
    name = events.FILE_ARRIVED
    if arrival.disposition == Disposition.DUPLICATE:
        name = events.FILE_DUPLICATE
        payload["duplicate_of"] = arrival.duplicate_of
    elif arrival.disposition == Disposition.REFUSED:
        name = events.FILE_REJECTED
        record = ledger.get(arrival.sha256)
        payload["reason"] = record.reason if record else None
        payload["quarantine_path"] = arrival.path
    event = events.file_event(
        name,
        sha256=arrival.sha256,
        file_name=arrival.name,
        payload=payload,
        id=events.event_id(name, arrival.sha256, arrival.id),
        related=[events.inbox_related(inbox)],
    )
    if arrival.announced_at is not None:  # sent before: the same fact, at the same time
        event.occurred = datetime.fromtimestamp(arrival.announced_at, UTC)
    return event


@dataclass
class _Unchecked:
    event: events.Event
    file_name: str
    due: float
    resends: int = 0


class StoreCheck:
    """Follows accepted events until the event store holds them; resends the lost ones."""

    def __init__(
        self,
        store: events.StoredEvents,
        emitter: events.Emitter,
        *,
        check_after: float = CHECK_AFTER_SECONDS,
        max_resends: int = MAX_RESENDS,
    ) -> None:
        self.store = store
        self.emitter = emitter
        self.check_after = check_after
        self.max_resends = max_resends
        self._unchecked: dict[str, _Unchecked] = {}

    def __len__(self) -> int:
        return len(self._unchecked)

    def expect(self, event: events.Event, file_name: str, now: float) -> None:
        """`event` was accepted at `now`; look for it in the store `check_after` later."""
        self._unchecked[event.id] = _Unchecked(event, file_name, now + self.check_after)

    def check(self, now: float) -> int:
        """Look up the events that are due; resend the missing ones. Returns how many."""
        due = [u for u in self._unchecked.values() if u.due <= now]
        if not due:
            return 0
        since = min(u.event.occurred for u in due) - timedelta(minutes=1)
        try:
            stored = self.store.stored([u.event.id for u in due], since)
        except events.EventNotDelivered as error:
            log.warning("Could not check that %d event(s) were stored: %s", len(due), error)
            for unchecked in due:
                unchecked.due = now + self.check_after
            return 0
        resent = 0
        for unchecked in due:
            if unchecked.event.id in stored:
                del self._unchecked[unchecked.event.id]
            elif unchecked.resends >= self.max_resends:
                del self._unchecked[unchecked.event.id]
                log.error(
                    "Prefect accepted the %s event for %s but never stored it, after %d "
                    "resends; the file is safe in the ledger, the event feed misses it",
                    unchecked.event.event,
                    unchecked.file_name,
                    unchecked.resends,
                )
            elif self._resend(unchecked, now):
                resent += 1
        return resent

    def _resend(self, unchecked: _Unchecked, now: float) -> bool:
        unchecked.due = now + self.check_after * 2 ** (unchecked.resends + 1)
        try:
            self.emitter.emit([unchecked.event])
        except events.EventNotDelivered as error:
            log.warning("Resending the event for %s delayed: %s", unchecked.file_name, error)
            return False
        unchecked.resends += 1
        log.warning(
            "Prefect accepted the %s event for %s but did not store it (a broker or server "
            "restart loses what it has not written yet); sent it again",
            unchecked.event.event,
            unchecked.file_name,
        )
        return True
