"""Stuck files (automations.stuck) and the sensor's alerts: a file pending past
alerts.stuck_after_seconds is reported once; a file refused at the door is reported with its
reason. A real ledger on a tmp home, a fake clock and a fake notifier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from automations.stuck import StuckFiles
from shared.ledger import FileState, Ledger
from shared.settings import Settings
from tests.support.fakes import FakeClock, FakeNotifier
from tests.support.rigs import SensorRig

AFTER = 600.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def ledger(settings: Settings, clock: FakeClock) -> Iterator[Ledger]:
    ledger = Ledger(settings.ledger_url, clock=clock)
    yield ledger
    ledger.close()


@pytest.fixture
def notifier() -> FakeNotifier:
    return FakeNotifier()


@pytest.fixture
def stuck(ledger: Ledger, notifier: FakeNotifier, clock: FakeClock) -> StuckFiles:
    return StuckFiles(ledger, notifier, AFTER, clock=clock)


def _arrive(ledger: Ledger, name: str, sha: str, *, announce: bool = True) -> None:
    arrival = ledger.record_arrival(
        name=name, path=f"/inbox/{name}", size=10, sha256=sha, detected_via="push"
    )
    assert arrival is not None
    if announce:
        ledger.mark_announced(arrival.id)


def test_a_file_pending_past_the_threshold_is_alerted_once(
    ledger: Ledger,
    stuck: StuckFiles,
    notifier: FakeNotifier,
    clock: FakeClock,
    settings: Settings,
) -> None:
    _arrive(ledger, "late.csv", "a" * 64)
    clock.advance(AFTER - 1)
    assert stuck.sweep() == 0
    assert notifier.sent == []

    clock.advance(2)
    assert stuck.sweep() == 1
    (alert,) = notifier.sent
    assert alert.title == "Arrivals: late.csv stuck for 10 min"
    assert "still announced" in alert.body and "worker" in alert.body

    clock.advance(AFTER * 5)
    assert ledger.stuck_unalerted(AFTER) == []  # not read again every sweep
    assert stuck.sweep() == 0, "once per file, however long it stays stuck"
    # The note is in the ledger: a restarted sensor does not alert again either.
    again = Ledger(settings.ledger_url, clock=clock)
    try:
        assert StuckFiles(again, notifier, AFTER, clock=clock).sweep() == 0
    finally:
        again.close()
    assert len(notifier.sent) == 1


def test_each_stuck_file_gets_its_own_alert_oldest_first(
    ledger: Ledger, stuck: StuckFiles, notifier: FakeNotifier, clock: FakeClock
) -> None:
    _arrive(ledger, "first.csv", "a" * 64, announce=False)  # Prefect never confirmed it
    clock.advance(10)
    _arrive(ledger, "second.csv", "b" * 64)
    (claimed,) = ledger.claim_pending("run-1", ttl_seconds=10_000)
    assert claimed.name == "second.csv"
    clock.advance(AFTER + 1)
    assert stuck.sweep() == 2
    assert [a.title.split()[1] for a in notifier.sent] == ["first.csv", "second.csv"]
    assert "still detected" in notifier.sent[0].body
    assert "still claimed" in notifier.sent[1].body


def test_decided_files_are_never_stuck(
    ledger: Ledger, stuck: StuckFiles, notifier: FakeNotifier, clock: FakeClock
) -> None:
    _arrive(ledger, "good.csv", "a" * 64)
    _arrive(ledger, "bad.csv", "b" * 64)
    ledger.claim_pending("run-1", ttl_seconds=60)
    ledger.mark_trained({"a" * 64: 20}, run_id="run-1", version="1")
    ledger.mark_rejected("b" * 64, run_id="run-1", reason="missing columns", path="/q/bad.csv")
    clock.advance(AFTER * 10)
    assert stuck.sweep() == 0
    assert notifier.sent == []


def test_a_failed_send_is_not_retried_and_never_raises(
    ledger: Ledger, stuck: StuckFiles, notifier: FakeNotifier, clock: FakeClock
) -> None:
    notifier.fail = True
    _arrive(ledger, "late.csv", "a" * 64)
    clock.advance(AFTER + 1)
    assert stuck.sweep() == 1  # attempted; the notifier logged the failure
    assert stuck.sweep() == 0  # a receiver that is down costs one alert, not a flood
    assert len(notifier.sent) == 1


def test_content_let_in_again_is_a_new_wait(
    ledger: Ledger, stuck: StuckFiles, notifier: FakeNotifier, clock: FakeClock
) -> None:
    sha = "a" * 64
    _arrive(ledger, "late.csv", sha)
    clock.advance(AFTER + 1)
    assert stuck.sweep() == 1
    ledger.claim_pending("run-1", ttl_seconds=60)
    ledger.mark_rejected(sha, run_id="run-1", reason="bad", path="/q/late.csv")
    assert ledger.readmit(sha, "/q/late.csv")
    clock.advance(1)
    _arrive(ledger, "late.csv", sha)  # released and dropped again: detected anew
    assert ledger.get(sha).state == FileState.ANNOUNCED
    assert stuck.sweep() == 0
    clock.advance(AFTER + 1)
    assert stuck.sweep() == 1
    assert len(notifier.sent) == 2


# -- in the sensor's loop -----------------------------------------------------------------


def test_the_sensor_sweeps_for_stuck_files(rig: SensorRig) -> None:
    rig.drop("late.csv")
    rig.step()
    rig.detect()
    assert rig.notifier.sent == []
    rig.ledger_clock.advance(rig.settings.alerts.stuck_after_seconds + 1)
    rig.step(rig.settings.sensor.rescan_seconds)
    (alert,) = rig.notifier.sent
    assert alert.title.startswith("Arrivals: late.csv stuck for")
    rig.step(rig.settings.sensor.rescan_seconds)
    assert len(rig.notifier.sent) == 1


def test_a_file_refused_at_the_door_is_alerted_with_its_reason(rig: SensorRig) -> None:
    rig.drop("notes.txt")
    rig.step()
    rig.detect()
    (alert,) = rig.notifier.sent
    assert alert.title == "Arrivals: notes.txt rejected"
    assert "Reason: not a CSV: notes.txt" in alert.body
    assert f"Now at: {rig.settings.dirs.quarantine / 'notes.txt'}" in alert.body
    assert "rename it to .csv" in alert.body


def test_an_accepted_arrival_is_not_alerted(rig: SensorRig) -> None:
    rig.drop("fine.csv")
    rig.step()
    rig.detect()
    assert rig.emitter.delivered  # it was announced...
    assert rig.notifier.sent == []  # ...and nobody is bothered
