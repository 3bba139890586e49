"""The inbox sensor: watchdog + startup scan + periodic rescan -> ledger -> confirmed event.

Design (see the brief's watchdog notes):
- the watchdog handler only queues paths, so it can never raise and kill the dispatcher;
- `Settler` (automations/settler.py) decides when a file is complete: closed after writing,
  renamed into place, or unchanged in size/mtime/inode across two checks (all polling offers);
- every complete file that is not a temp name ends in a count: a CSV (or .csv.gz) waits for
  a retrain, anything else is refused at the door (automations/door.py) and quarantined;
- every complete file is recorded in the ledger *before* it is announced, and announced
  through `ConfirmedEmitter`; what the API has not confirmed is retried until it is;
- the observer starts first, then the inbox is scanned, then rescanned periodically, so
  files that arrived while the sensor was down or that an inotify overflow dropped are found;
- a dead observer thread is noticed and rebuilt.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from automations.delivery import RECHECK_ON_START_SECONDS, StoreCheck, arrival_event
from automations.door import not_csv_reason, special_key, special_reason
from automations.set_aside import archive_duplicate, refuse
from automations.settler import (
    CLOSED,
    CREATED,
    MODIFIED,
    MOVED,
    SCANNED,
    Settler,
    signature,
)
from automations.stuck import StuckFiles
from shared import events
from shared.alerts import BackgroundNotifier, NoNotifier, Notifier, notifier_for
from shared.fs import is_temp_name, sha256_file
from shared.ledger import Arrival, Disposition, Ledger
from shared.settings import Settings

log = logging.getLogger("arrivals.sensor")

PROGRESS_EVERY = 50  # files: a catch-up at least this large logs its progress


def _handler_class():
    from watchdog.events import FileSystemEventHandler

    class InboxHandler(FileSystemEventHandler):
        """Queues (path, kind). Never raises: an exception here kills the observer thread."""

        def __init__(self, sink: queue.SimpleQueue) -> None:
            self.sink = sink

        def on_any_event(self, event) -> None:
            try:
                if event.is_directory:
                    return
                kind = {
                    "created": CREATED,
                    "modified": MODIFIED,
                    "closed": CLOSED,
                    "moved": MOVED,
                }.get(event.event_type)
                if kind is None:
                    return
                path = event.dest_path if kind == MOVED else event.src_path
                self.sink.put((os.fsdecode(path), kind))
            except Exception:  # see the class docstring: never let it escape
                log.exception("watchdog handler failed on %r", event)

    return InboxHandler


class InboxSensor:
    """Turns complete files in the inbox into ledger rows and confirmed Prefect events."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        emitter: events.Emitter,
        *,
        clock: Callable[[], float] = time.monotonic,
        observer_factory: Callable[[], object] | None = None,
        run_states: events.RunStates | None = None,
        notifier: Notifier | None = None,
        store_check: StoreCheck | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.emitter = emitter
        self.clock = clock
        self.inbox = settings.dirs.inbox.resolve()  # a symlinked inbox gets no inotify events
        self.settler = Settler(settings.sensor.settle_seconds, settings.sensor.open_grace_seconds)
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self._observer_factory = observer_factory
        self.run_states = run_states
        self.notifier = notifier or NoNotifier()
        self.store_check = store_check
        self.stuck = StuckFiles(ledger, self.notifier, settings.alerts.stuck_after_seconds)
        self._recorded: dict[Path, tuple[int, int, int] | None] = {}
        self._observer = None
        self._stop = threading.Event()
        self._next_rescan = 0.0
        self._next_announce = 0.0
        self._next_heartbeat = 0.0
        self.host = socket.gethostname()

    # -- observer -------------------------------------------------------------------------
    def start_observer(self) -> None:
        if self._observer_factory is not None:
            observer = self._observer_factory()
        else:
            from watchdog.observers import Observer

            observer = Observer()
        observer.schedule(_handler_class()(self.queue), str(self.inbox), recursive=False)
        observer.start()
        self._observer = observer

    @property
    def watching(self) -> bool:
        return self._observer is not None and self._observer.is_alive()

    def check_observer(self) -> None:
        """Rebuild the observer if its thread died; rescan for what it may have missed."""
        if self._observer is not None and not self.watching:
            log.error("watchdog observer died; restarting it and rescanning the inbox")
            self.start_observer()
            self.scan(self.clock())

    # -- detection -----------------------------------------------------------------------
    def scan(self, now: float) -> int:
        """Follow every file in the inbox (not temp names, not folders) not followed yet."""
        found = 0
        try:
            entries = list(os.scandir(self.inbox))
        except FileNotFoundError:
            self.inbox.mkdir(parents=True, exist_ok=True)
            return 0
        for entry in entries:
            path = Path(entry.path)
            if is_temp_name(entry.name) or path in self.settler:
                continue
            if entry.is_dir(follow_symlinks=False):
                continue  # a folder is not a file; moving one mid-copy would break the copy
            if self._recorded.get(path) == signature(path):
                continue  # recorded already and unchanged: no need to hash it again
            self.settler.notice(path, SCANNED, now)
            found += 1
        return found

    def drain_queue(self, now: float) -> None:
        while True:
            try:
                raw, kind = self.queue.get_nowait()
            except queue.Empty:
                return
            path = Path(raw)
            if path.parent.resolve() == self.inbox and not is_temp_name(path.name):
                self.settler.notice(path, kind, now)

    def record(self, path: Path, via: str) -> Arrival | None:
        """Hash and record one complete file; duplicates and refusals move away right away.

        A CSV waits in the inbox for a retrain. Anything else is refused (see
        `automations.door`): recorded as rejected, so it shows in a count, and quarantined
        (`automations.set_aside`, which a full data folder never stops).
        """
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None
        if stat.S_ISREG(st.st_mode):
            refused = not_csv_reason(path.name)
            sha256 = sha256_file(path)
        else:  # never opened: a link or a pipe could lead anywhere
            refused, sha256 = special_reason(path.name, st), special_key(path, st)
        if len(self._recorded) > 100_000:
            self._recorded.clear()  # a cache, not state: the ledger decides what is new
        self._recorded[path] = signature(path)
        arrival = self.ledger.record_arrival(
            name=path.name,
            path=str(path),
            size=st.st_size,
            sha256=sha256,
            detected_via=via,
            refused=refused,
        )
        if arrival is None:
            return None
        if arrival.disposition == Disposition.REFUSED:
            refuse(self.settings.dirs, self.ledger, self.notifier, path, arrival, refused)
        elif arrival.disposition == Disposition.DUPLICATE:
            archive_duplicate(self.settings.dirs, self.ledger, path, arrival)
        else:
            log.info(
                "Detected %s (%d bytes, sha256 %s, via %s)", path.name, st.st_size, sha256[:12], via
            )
        return arrival

    def record_all(self, ready: list[tuple[Path, str]]) -> list[Arrival | None]:
        """Record settled files; a long catch-up (many files at once) reports its progress."""
        recorded = []
        for done, (path, via) in enumerate(ready, start=1):
            recorded.append(self.record(path, via))
            if len(ready) >= PROGRESS_EVERY and done % PROGRESS_EVERY == 0:
                log.info("Catching up: %d of %d files recorded", done, len(ready))
        return recorded

    # -- delivery ------------------------------------------------------------------------
    def announce_pending(self) -> int:
        """Send every unconfirmed arrival; stop at the first failure and retry later."""
        sent = 0
        for arrival in self.ledger.unannounced():
            event = arrival_event(self.ledger, arrival, str(self.inbox))
            try:
                self.emitter.emit([event])
            except events.EventNotDelivered as error:
                log.warning("Announcement of %s delayed: %s", arrival.name, error)
                return sent
            self.ledger.mark_announced(arrival.id)
            if self.store_check is not None:
                self.store_check.expect(event, arrival.name, self.clock())
            sent += 1
        return sent

    def recheck_recent(self) -> None:
        """Check the events of recent arrivals: a sensor that stopped may not have."""
        if self.store_check is None:
            return
        now = self.clock()
        for arrival in self.ledger.announced_since(time.time() - RECHECK_ON_START_SECONDS):
            event = arrival_event(self.ledger, arrival, str(self.inbox))
            self.store_check.expect(event, arrival.name, now)

    def release_ended_claims(self) -> set[str]:
        """Runs that ended (crashed, failed, cancelled) while holding files give them back."""
        if self.run_states is None:
            return set()
        ended = set()
        for run_id in self.ledger.claiming_runs():
            if self.run_states.ended(run_id):
                released = self.ledger.release_claims(run_id)
                log.warning("Run %s ended holding %d file(s); released them", run_id, released)
                ended.add(run_id)
        return ended

    def reannounce_stragglers(self) -> int:
        """Announce again the oldest file no run took (see `Ledger.stragglers`).

        One event is enough: the run it starts claims every pending file. A run already in
        flight makes the extra run a cheap no-op (the deployment cancels it before it starts).
        """
        stragglers = self.ledger.stragglers(
            self.settings.sensor.reannounce_after_seconds, self.release_ended_claims()
        )
        if not stragglers:
            return 0
        record = stragglers[0]
        event = events.file_event(
            events.FILE_ARRIVED,
            sha256=record.sha256,
            file_name=record.name,
            payload={
                "name": record.name,
                "path": record.stored_path,
                "size": record.size,
                "sha256": record.sha256,
                "detected_via": "scan",
                "reannounced": True,
                "waiting": len(stragglers),
            },
            # One id per attempt: the server keeps each, and drops retries of one.
            id=events.event_id(events.FILE_ARRIVED, record.sha256, record.announced_at),
            related=[events.inbox_related(str(self.inbox))],
        )
        try:
            self.emitter.emit([event])
        except events.EventNotDelivered as error:
            log.warning("Re-announcement of %s delayed: %s", record.name, error)
            return 0
        for straggler in stragglers:
            self.ledger.touch_announced(straggler.sha256)
        log.warning(
            "%d file(s) waiting with no run; announced %s again", len(stragglers), record.name
        )
        return len(stragglers)

    def heartbeat(self) -> None:
        counts = self.ledger.counts()
        beat = events.Event(
            event=events.SENSOR_HEARTBEAT,
            resource={
                "prefect.resource.id": f"inbox.sensor.{self.host}",
                "prefect.resource.name": f"sensor on {self.host}",
            },
            payload={"pending": counts["pending"], "watching": self.watching},
            id=events.event_id(events.SENSOR_HEARTBEAT, self.host, time.time()),
        )
        try:
            self.emitter.emit([beat])
        except events.EventNotDelivered as error:
            log.warning("Heartbeat not delivered: %s", error)

    # -- the loop ------------------------------------------------------------------------
    def step(self, now: float) -> None:
        """One pass: take pushes, rescan when due, record what settled, announce."""
        sensor = self.settings.sensor
        self.check_observer()
        self.drain_queue(now)
        if now >= self._next_rescan:
            self.scan(now)
            self.reannounce_stragglers()
            self.stuck.sweep()
            self._next_rescan = now + sensor.rescan_seconds
        recorded = self.record_all(self.settler.ready(now))
        if any(recorded) or now >= self._next_announce:
            self.announce_pending()
            waiting = bool(self.ledger.unannounced())
            self._next_announce = now + (sensor.retry_seconds if waiting else sensor.rescan_seconds)
        if self.store_check is not None:
            self.store_check.check(now)
        if now >= self._next_heartbeat:
            self.heartbeat()
            self._next_heartbeat = now + sensor.heartbeat_seconds

    def run(self, *, tick: float = 0.1, alive_file: Path | None = None) -> None:
        """Run until `stop()`; writes `alive_file` every pass so a supervisor sees progress."""
        self.start_observer()
        self.recheck_recent()
        log.info("Watching %s", self.inbox)
        try:
            while not self._stop.is_set():
                self.step(self.clock())
                if alive_file is not None:
                    alive_file.write_text(f"{time.time()} {int(self.watching)}\n")
                self._stop.wait(tick)
        finally:
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=5)

    def stop(self) -> None:
        self._stop.set()


def main(argv: Iterable[str] | None = None) -> None:
    """`arrivals-sensor`: run the sensor for the configured home until SIGTERM/SIGINT."""
    from shared.logs import setup_logging
    from shared.settings import load_settings

    setup_logging()
    settings = load_settings()
    settings.dirs.ensure()
    ledger = Ledger(settings.ledger_url)
    # The API server the stack points this process at (in the scale profile a replica other
    # than the one the automations were applied to); the configured one when run alone.
    api_url = os.environ.get("PREFECT_API_URL") or settings.prefect_api_url
    notifier = BackgroundNotifier(notifier_for(settings.alerts))  # never holds up the loop
    emitter = events.ConfirmedEmitter(api_url)
    sensor = InboxSensor(
        settings,
        ledger,
        emitter,
        run_states=events.RunStates(api_url),
        notifier=notifier,
        store_check=StoreCheck(events.EventStore(api_url), emitter),
    )
    signal.signal(signal.SIGTERM, lambda *_: sensor.stop())
    signal.signal(signal.SIGINT, lambda *_: sensor.stop())
    sensor.run(alive_file=settings.dirs.run / "sensor.alive")
    notifier.close()
    ledger.close()


if __name__ == "__main__":
    main()
