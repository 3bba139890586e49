"""The sensor checks that Prefect stored each arrival event it accepted, and resends lost ones."""

from __future__ import annotations

import hashlib
import logging
import time

from automations.delivery import CHECK_AFTER_SECONDS, StoreCheck
from automations.sensor import InboxSensor
from shared import events
from tests.support.data import ROWS
from tests.support.fakes import FakeClock, FakeEmitter, FakeEventStore
from tests.support.rigs import SensorRig

DIGEST = hashlib.sha256(ROWS).hexdigest()
FIRST_EVENT_ID = events.event_id(events.FILE_ARRIVED, DIGEST, 1)  # the first arrival's event


def arrived(rig: SensorRig) -> list[events.Event]:
    return rig.emitter.named(events.FILE_ARRIVED)


def test_a_stored_event_is_looked_up_once_and_not_sent_again(rig: SensorRig) -> None:
    rig.drop("a.csv")
    rig.detect()
    assert [e.id for e in arrived(rig)] == [FIRST_EVENT_ID]

    rig.step(CHECK_AFTER_SECONDS - 1)
    assert rig.store.lookups == [], "not looked up before the persister had time to write"
    rig.step(1.01)
    assert rig.store.lookups == [[FIRST_EVENT_ID]]
    rig.step(10 * CHECK_AFTER_SECONDS)
    assert len(arrived(rig)) == 1 and len(rig.store.lookups) == 1
    assert len(rig.sensor.store_check) == 0


def test_an_accepted_event_the_store_lost_is_sent_again_under_its_id(rig: SensorRig) -> None:
    rig.store.lose(FIRST_EVENT_ID)
    rig.drop("a.csv")
    rig.detect()
    (first,) = arrived(rig)

    rig.step(CHECK_AFTER_SECONDS + 0.01)
    first_copy, second = arrived(rig)
    assert first_copy is first
    assert (second.id, second.occurred, second.payload) == (first.id, first.occurred, first.payload)

    rig.step(2 * CHECK_AFTER_SECONDS + 0.01)  # stored now: found, and followed no more
    assert len(arrived(rig)) == 2
    assert len(rig.sensor.store_check) == 0


def test_a_store_that_cannot_answer_delays_the_check_and_loses_nothing(rig: SensorRig) -> None:
    rig.store.lose(FIRST_EVENT_ID)
    rig.store.down = True
    rig.drop("a.csv")
    rig.detect()
    for _ in range(5):
        rig.step(CHECK_AFTER_SECONDS + 0.01)
    assert len(arrived(rig)) == 1, "no resend while the store cannot say what it holds"
    assert len(rig.sensor.store_check) == 1

    rig.store.down = False
    rig.step(CHECK_AFTER_SECONDS + 0.01)
    assert len(arrived(rig)) == 2


def test_resends_back_off_and_end_with_an_error_naming_the_file(caplog) -> None:
    emitter = FakeEmitter()
    store = FakeEventStore(emitter)
    check = StoreCheck(store, emitter, check_after=10.0, max_resends=3)
    event = events.file_event(
        events.FILE_ARRIVED, sha256=DIGEST, file_name="a.csv", payload={}, id=FIRST_EVENT_ID
    )
    store.lose(event.id, times=100)
    emitter.emit([event])
    clock = FakeClock(0.0)
    check.expect(event, "a.csv", clock.now)

    sent_at = []
    with caplog.at_level(logging.WARNING, logger="arrivals.sensor"):
        while clock.now < 1_000 and len(check):
            if check.check(clock.advance(1.0)):
                sent_at.append(clock.now)
    assert sent_at == [10.0, 30.0, 70.0]  # 10 s, then 20 s, then 40 s apart
    assert len(emitter.delivered) == 4 and len(check) == 0
    (gave_up,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "a.csv" in gave_up.getMessage() and "3 resends" in gave_up.getMessage()


def test_a_restarted_sensor_checks_what_its_last_run_announced(rig: SensorRig) -> None:
    rig.ledger_clock.now = time.time()  # announced a moment ago, by the ledger's clock
    rig.store.lose(FIRST_EVENT_ID)
    rig.drop("a.csv")
    rig.detect()  # accepted, then the sensor stopped before its check was due
    (first,) = arrived(rig)

    emitter = FakeEmitter()
    emitter.delivered.append(first)  # what the API accepted (and lost) before the restart
    store = FakeEventStore(emitter)
    store.lose(FIRST_EVENT_ID)
    clock = FakeClock(0.0)
    restarted = InboxSensor(
        rig.settings, rig.ledger, emitter, clock=clock, store_check=StoreCheck(store, emitter)
    )
    restarted.recheck_recent()
    assert len(restarted.store_check) == 1
    restarted.store_check.check(clock.advance(CHECK_AFTER_SECONDS))

    (resent,) = emitter.attempts
    assert resent.id == first.id and resent.payload == first.payload
    assert abs((resent.occurred - first.occurred).total_seconds()) < 1


def test_a_restarted_sensor_leaves_old_announcements_alone(rig: SensorRig) -> None:
    rig.ledger_clock.now = time.time() - 3600  # an hour ago: long checked
    rig.drop("a.csv")
    rig.detect()
    rig.sensor.store_check = StoreCheck(rig.store, rig.emitter)
    rig.sensor.recheck_recent()
    assert len(rig.sensor.store_check) == 0
