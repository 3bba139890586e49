"""InboxSensor with a fake emitter and a fake observer: inbox -> ledger -> confirmed events."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from automations.sensor import CLOSED
from shared import events
from shared.ledger import Disposition, FileState
from shared.settings import Settings
from tests.support.data import OTHER_ROWS, ROWS
from tests.support.fakes import FakeRunStates
from tests.support.rigs import SensorRig


def test_a_csv_in_the_inbox_is_recorded_and_announced(rig: SensorRig) -> None:
    path = rig.drop("tips_batch_001.csv")
    digest = hashlib.sha256(ROWS).hexdigest()
    rig.step()
    rig.detect()

    (arrival,) = rig.ledger.arrivals()
    assert (arrival.name, arrival.sha256, arrival.disposition) == (
        path.name,
        digest,
        Disposition.NEW,
    )
    assert rig.ledger.get(digest).state == FileState.ANNOUNCED
    assert rig.ledger.unannounced() == []

    (event,) = rig.emitter.named(events.FILE_ARRIVED)
    assert event.resource["prefect.resource.id"] == f"inbox.file.{digest}"
    assert event.resource["prefect.resource.name"] == path.name
    assert event.payload == {
        "name": path.name,
        "path": str(path),
        "size": len(ROWS),
        "sha256": digest,
        "detected_via": "scan",
    }
    assert path.exists(), "the sensor leaves accepted arrivals where they are"


def test_nothing_is_recorded_before_the_file_settles(rig: SensorRig) -> None:
    rig.drop("a.csv")
    rig.step()
    rig.step(rig.settle / 2)
    assert rig.ledger.arrivals() == []
    assert rig.emitter.named(events.FILE_ARRIVED) == []
    rig.step(rig.settle)
    assert len(rig.ledger.arrivals()) == 1


@pytest.mark.parametrize(
    "name", [".a.csv", "a.csv.part", "~$a.csv", "a.csv~", "a.tmp", "a.crdownload", "a.csv.gz.part"]
)
def test_temp_names_are_ignored(rig: SensorRig, name: str) -> None:
    path = rig.drop(name)
    rig.step()
    rig.detect()
    rig.sensor.queue.put((str(path), CLOSED))
    rig.step(1.0)
    assert rig.ledger.arrivals() == []
    assert rig.emitter.named(events.FILE_ARRIVED) == []
    assert path.read_bytes() == ROWS, "ignored files are left alone"


def test_a_closed_push_is_recorded_without_waiting(rig: SensorRig) -> None:
    rig.step()  # the first scan, of an empty inbox
    path = rig.drop("pushed.csv")
    rig.sensor.queue.put((str(path), CLOSED))
    rig.step(0.01)
    (arrival,) = rig.ledger.arrivals()
    assert arrival.detected_via == "push"
    assert rig.emitter.named(events.FILE_ARRIVED)[0].payload["detected_via"] == "push"


def test_a_push_outside_the_inbox_is_ignored(rig: SensorRig, tmp_path: Path) -> None:
    rig.step()
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_bytes(ROWS)
    rig.sensor.queue.put((str(elsewhere), CLOSED))
    rig.step(1.0)
    assert rig.ledger.arrivals() == []


def test_push_and_scan_of_one_file_are_one_arrival(rig: SensorRig) -> None:
    path = rig.drop("a.csv")
    rig.step()
    rig.sensor.queue.put((str(path), CLOSED))
    rig.detect()
    rig.sensor.queue.put((str(path), CLOSED))  # a late push for the same file
    rig.step(1.0)
    rescan_due = rig.settings.sensor.rescan_seconds + 1
    rig.step(rescan_due)  # the periodic rescan sees the pending file again
    rig.step(rig.settle + 0.01)
    assert len(rig.ledger.arrivals()) == 1
    assert len(rig.emitter.named(events.FILE_ARRIVED)) == 1


def test_undelivered_arrival_is_kept_and_announced_later_with_the_same_id(rig: SensorRig) -> None:
    rig.emitter.fail = lambda _batch: True  # Prefect is down
    path = rig.drop("a.csv")
    rig.step()
    rig.detect()

    (pending,) = rig.ledger.unannounced()
    assert pending.name == path.name
    assert rig.ledger.get(pending.sha256).state == FileState.DETECTED
    first_try = rig.emitter.named(events.FILE_ARRIVED, attempted=True)
    assert len(first_try) == 1 and rig.emitter.delivered == []

    rig.emitter.fail = lambda _batch: False  # Prefect is back
    rig.step(rig.settings.sensor.retry_seconds + 0.01)
    (delivered,) = rig.emitter.named(events.FILE_ARRIVED)
    assert delivered.id == first_try[0].id, "a retry is the same event, so it is not doubled"
    assert delivered.payload == first_try[0].payload
    assert rig.ledger.unannounced() == []
    assert rig.ledger.get(pending.sha256).state == FileState.ANNOUNCED


def test_partly_delivered_arrivals_are_retried_after_retry_seconds(rig: SensorRig) -> None:
    """Two arrivals, the API takes the first and then goes down: the second is retried soon."""
    rig.drop("a.csv", ROWS)
    rig.drop("b.csv", OTHER_ROWS)
    outage = {"left": 1}

    def fail(batch: Sequence[events.Event]) -> bool:
        arrivals = [e for e in batch if e.event == events.FILE_ARRIVED]
        if arrivals and rig.emitter.named(events.FILE_ARRIVED) and outage["left"]:
            outage["left"] -= 1
            return True
        return False

    rig.emitter.fail = fail
    rig.step()
    rig.detect()
    assert len(rig.emitter.named(events.FILE_ARRIVED)) == 1
    assert len(rig.ledger.unannounced()) == 1

    retry = rig.settings.sensor.retry_seconds
    assert retry < rig.settings.sensor.rescan_seconds
    rig.step(retry + 0.01)
    assert rig.ledger.unannounced() == [], (
        f"the undelivered arrival must be retried after retry_seconds={retry}"
    )
    assert len(rig.emitter.named(events.FILE_ARRIVED)) == 2


def test_duplicate_content_is_archived_and_announced_as_duplicate(rig: SensorRig) -> None:
    first = rig.drop("a.csv")
    rig.step()
    rig.detect()
    copy = rig.drop("copy of a.csv")  # same bytes, new name
    rig.detect()

    assert first.exists()
    assert not copy.exists()
    moved = rig.settings.dirs.archive / "duplicates" / copy.name
    assert moved.read_bytes() == ROWS

    digest = hashlib.sha256(ROWS).hexdigest()
    (event,) = rig.emitter.named(events.FILE_DUPLICATE)
    assert event.payload["duplicate_of"] == first.name
    assert event.payload["name"] == copy.name
    assert event.payload["path"] == str(moved)
    assert event.resource["prefect.resource.id"] == f"inbox.file.{digest}"
    assert len(rig.emitter.named(events.FILE_ARRIVED)) == 1, "a duplicate never triggers a run"

    dispositions = [(a.name, a.disposition) for a in rig.ledger.arrivals()]
    assert dispositions == [(first.name, Disposition.NEW), (copy.name, Disposition.DUPLICATE)]
    assert rig.ledger.counts()["duplicate"] == 1
    assert rig.ledger.counts()["pending"] == 1


def test_a_second_duplicate_with_the_same_name_does_not_overwrite(rig: SensorRig) -> None:
    rig.drop("a.csv")
    rig.step()
    rig.detect()
    for _ in range(2):
        rig.drop("copy.csv")
        rig.detect()
    archived = sorted((rig.settings.dirs.archive / "duplicates").iterdir())
    assert len(archived) == 2
    assert all(p.read_bytes() == ROWS for p in archived)
    assert len(rig.emitter.named(events.FILE_DUPLICATE)) == 2


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_symlink_is_quarantined_and_not_followed(
    rig: SensorRig, tmp_path: Path, dangling: bool
) -> None:
    secret = tmp_path / "outside" / "secret.csv"
    secret.parent.mkdir()
    if not dangling:
        secret.write_bytes(ROWS)
    link = rig.inbox / "link.csv"
    link.symlink_to(secret)
    rig.step()
    rig.detect()

    assert not os.path.lexists(link)
    quarantined = rig.settings.dirs.quarantine / "link.csv"
    assert quarantined.is_symlink()
    assert os.readlink(quarantined) == str(secret), "the link itself moved, not its target"
    reason = json.loads((rig.settings.dirs.quarantine / "link.csv.reason.json").read_text())
    assert "symbolic link" in reason["reason"]
    if not dangling:
        assert secret.read_bytes() == ROWS
    (arrival,) = rig.ledger.arrivals()
    assert (arrival.name, arrival.disposition) == ("link.csv", Disposition.REFUSED)
    assert rig.ledger.get(arrival.sha256).state == FileState.REJECTED, (
        "it shows in the rejected count"
    )
    assert rig.ledger.counts()["rejected"] == 1
    assert rig.emitter.named(events.FILE_ARRIVED) == []
    (event,) = rig.emitter.named(events.FILE_REJECTED)
    assert event.payload["quarantine_path"] == str(quarantined)


def test_observer_is_scheduled_on_the_inbox_and_rebuilt_when_it_dies(rig: SensorRig) -> None:
    rig.sensor.start_observer()
    (observer,) = rig.observers
    (handler, watched, recursive) = observer.scheduled[0]
    assert callable(handler.on_any_event)
    assert Path(watched) == rig.inbox.resolve()
    assert recursive is False
    assert rig.sensor.watching

    rig.step()  # first scan done; the next periodic one is far away
    path = rig.drop("missed.csv")
    observer.alive = False  # the observer thread died, its events were lost
    assert not rig.sensor.watching
    rig.step(0.01)
    assert len(rig.observers) == 2 and rig.sensor.watching
    rig.step(rig.settle + 0.01)
    assert [a.name for a in rig.ledger.arrivals()] == [path.name], "the restart rescans"


def test_the_watchdog_handler_only_queues_and_never_raises(rig: SensorRig) -> None:
    from watchdog.events import DirCreatedEvent, FileClosedEvent, FileMovedEvent

    rig.sensor.start_observer()
    handler = rig.observers[0].scheduled[0][0]
    target = rig.inbox / "a.csv"
    handler.on_any_event(FileClosedEvent(str(target)))
    handler.on_any_event(FileMovedEvent(str(rig.inbox / ".a.csv.tmp"), str(target)))
    handler.on_any_event(DirCreatedEvent(str(rig.inbox / "folder")))
    handler.on_any_event(object())  # nonsense must not kill the observer thread
    queued = []
    while not rig.sensor.queue.empty():
        queued.append(rig.sensor.queue.get_nowait())
    assert queued == [(str(target), "closed"), (str(target), "moved")]


def test_heartbeat_reports_pending_files(rig: SensorRig) -> None:
    rig.step()
    (beat,) = rig.emitter.named(events.SENSOR_HEARTBEAT)
    assert beat.resource["prefect.resource.id"].startswith("inbox.sensor.")
    assert beat.payload["pending"] == 0
    rig.drop("a.csv")
    rig.detect()
    rig.step(rig.settings.sensor.heartbeat_seconds)
    beats = rig.emitter.named(events.SENSOR_HEARTBEAT)
    assert len(beats) == 2
    assert beats[-1].payload["pending"] == 1
    assert beats[0].id != beats[1].id


def test_a_failing_emitter_never_stops_the_step(rig: SensorRig) -> None:
    rig.emitter.fail = lambda _batch: True
    rig.drop("a.csv")
    for advance in (0.0, 1.0, 5.0, 40.0):
        rig.step(advance)  # must not raise
    assert len(rig.ledger.unannounced()) == 1


def test_a_large_catch_up_reports_progress(settings: Settings, tmp_path: Path, caplog) -> None:
    settings.dirs.ensure()
    rig = SensorRig(settings, tmp_path)
    for i in range(120):
        (rig.inbox / f"backlog_{i:03d}.csv").write_bytes(
            ROWS + f"{i}.5,1.0,Male,No,Sat,Lunch,2\n".encode()
        )
    with caplog.at_level("INFO", logger="arrivals.sensor"):
        rig.detect()  # the startup scan finds the backlog, which then settles
    progress = [r.getMessage() for r in caplog.records if "Catching up" in r.getMessage()]
    assert progress == [
        "Catching up: 50 of 120 files recorded",
        "Catching up: 100 of 120 files recorded",
    ]
    assert len(rig.ledger.files()) == 120


def test_a_gzipped_csv_is_recorded_and_announced_like_a_csv(rig: SensorRig) -> None:
    data = gzip.compress(ROWS, mtime=0)
    path = rig.drop("export.csv.gz", data)
    rig.step()
    rig.detect()
    (arrival,) = rig.ledger.arrivals()
    assert (arrival.name, arrival.disposition) == ("export.csv.gz", Disposition.NEW)
    assert arrival.sha256 == hashlib.sha256(data).hexdigest(), "the bytes as they arrived"
    (event,) = rig.emitter.named(events.FILE_ARRIVED)
    assert event.payload["name"] == "export.csv.gz"
    assert path.exists(), "it waits in the inbox for a retrain, like a CSV"


def test_a_file_that_is_not_a_csv_is_rejected_with_a_reason_and_quarantined(rig: SensorRig) -> None:
    data = b'{"not": "a table"}\n'
    path = rig.drop("report.json", data)
    rig.step()
    rig.detect()

    assert not path.exists()
    quarantined = rig.settings.dirs.quarantine / "report.json"
    assert quarantined.read_bytes() == data, "moved whole, nothing deleted"
    sidecar = json.loads((quarantined.parent / "report.json.reason.json").read_text())
    reason = "not a CSV: report.json; Arrivals reads .csv and .csv.gz files"
    assert sidecar["reason"] == reason
    assert sidecar["sha256"] == hashlib.sha256(data).hexdigest()
    assert "arrivals release" in sidecar["release"]

    digest = hashlib.sha256(data).hexdigest()
    record = rig.ledger.get(digest)
    assert (record.state, record.reason, record.stored_path) == (
        FileState.REJECTED,
        reason,
        str(quarantined),
    )
    assert rig.ledger.counts()["rejected"] == 1 and rig.ledger.counts()["pending"] == 0
    assert rig.emitter.named(events.FILE_ARRIVED) == [], "a refused file never starts a run"
    (event,) = rig.emitter.named(events.FILE_REJECTED)
    assert event.resource["prefect.resource.id"] == f"inbox.file.{digest}"
    assert event.payload["reason"] == reason
    assert event.payload["quarantine_path"] == str(quarantined)
    assert rig.ledger.claim_pending("run-1", ttl_seconds=60) == []


def test_a_refusal_is_announced_once_prefect_is_back(rig: SensorRig) -> None:
    rig.emitter.fail = lambda _batch: True
    rig.drop("notes.txt")
    rig.step()
    rig.detect()
    assert rig.emitter.named(events.FILE_REJECTED) == []
    (first_try,) = rig.emitter.named(events.FILE_REJECTED, attempted=True)
    rig.emitter.fail = lambda _batch: False
    rig.step(rig.settings.sensor.retry_seconds + 0.01)
    (delivered,) = rig.emitter.named(events.FILE_REJECTED)
    assert delivered.id == first_try.id
    assert rig.ledger.unannounced() == []
    assert rig.ledger.counts()["rejected"] == 1, "announcing does not make it pending"


def test_every_file_in_the_inbox_ends_in_exactly_one_count(rig: SensorRig) -> None:
    files = {
        "a.csv": ROWS,
        "b.csv.gz": gzip.compress(OTHER_ROWS, mtime=0),
        "copy of a.csv": ROWS,
        "report.json": b"{}",
        "notes.txt": b"hello",
        "copy of notes.txt": b"hello",
        "README": b"no suffix at all",
    }
    temp = [".hidden.csv", "c.csv.part", "~$d.csv"]
    for name in [*files, *temp]:
        rig.drop(name, files.get(name, ROWS))
    (rig.inbox / "a folder").mkdir()
    rig.step()
    rig.detect()
    rig.step(rig.settings.sensor.rescan_seconds + 1)  # a rescan finds nothing new
    rig.step(rig.settle + 0.01)

    counts = {k: rig.ledger.counts()[k] for k in ("pending", "trained", "rejected", "duplicate")}
    assert counts == {"pending": 2, "trained": 0, "rejected": 3, "duplicate": 2}
    assert sum(counts.values()) == len(files)
    left = sorted(p.name for p in rig.inbox.iterdir())
    assert left == sorted(["a.csv", "b.csv.gz", "a folder", *temp]), (
        "only CSVs waiting for a run, temp names and folders stay in the inbox"
    )
    assert len(rig.ledger.arrivals()) == len(files), "each recorded exactly once"


def test_a_refused_file_renamed_and_released_counts_as_new(rig: SensorRig) -> None:
    data = ROWS  # CSV text under the wrong name
    rig.drop("table.txt", data)
    rig.step()
    rig.detect()
    digest = hashlib.sha256(data).hexdigest()
    quarantined = rig.settings.dirs.quarantine / "table.txt"
    # What the sidecar tells a person: rename it, then `arrivals release` (which readmits).
    renamed = quarantined.rename(quarantined.with_name("table.csv"))
    assert rig.ledger.readmit(digest, str(renamed))
    renamed.replace(rig.inbox / "table.csv")
    rig.detect()
    record = rig.ledger.get(digest)
    assert (record.name, record.state) == ("table.csv", FileState.ANNOUNCED)
    assert [a.disposition for a in rig.ledger.arrivals()] == [Disposition.REFUSED, Disposition.NEW]
    assert len(rig.emitter.named(events.FILE_ARRIVED)) == 1


# -- the sweep: stragglers announced again, claims of ended runs released -------------------
def rescan(rig: SensorRig) -> None:
    """Step the sensor just past its next periodic rescan (where the sweep runs)."""
    rig.step(rig.settings.sensor.rescan_seconds + 0.01)


def reannounced(rig: SensorRig) -> list[events.Event]:
    return [e for e in rig.emitter.named(events.FILE_ARRIVED) if e.payload.get("reannounced")]


def test_a_straggler_is_announced_again_once_its_time_has_come_and_not_before(
    rig: SensorRig,
) -> None:
    path = rig.drop("a.csv")
    rig.step()
    rig.detect()
    digest = hashlib.sha256(ROWS).hexdigest()
    wait = rig.settings.sensor.reannounce_after_seconds
    announced_at = rig.ledger.get(digest).announced_at

    rig.ledger_clock.now += wait  # exactly the wait: not over yet
    rescan(rig)
    assert reannounced(rig) == []

    rig.ledger_clock.now += 1  # no run took it in time
    rescan(rig)
    (again,) = reannounced(rig)
    assert again.payload["name"] == path.name and again.payload["sha256"] == digest
    assert again.payload["waiting"] == 1
    assert again.id != rig.emitter.named(events.FILE_ARRIVED)[0].id, "a new event, not a retry"
    record = rig.ledger.get(digest)
    assert record.announced_at == rig.ledger_clock.now > announced_at, "its wait restarts"

    rescan(rig)  # the ledger clock did not move: the restarted wait is not over
    assert len(reannounced(rig)) == 1


def test_one_event_announces_every_straggler_again(rig: SensorRig) -> None:
    rig.drop("a.csv", ROWS)
    rig.drop("b.csv", OTHER_ROWS)
    rig.step()
    rig.detect()
    rig.ledger_clock.now += rig.settings.sensor.reannounce_after_seconds + 1
    rescan(rig)
    (again,) = reannounced(rig)
    assert again.payload["waiting"] == 2, "the run it starts claims both"
    assert {r.announced_at for r in rig.ledger.files()} == {rig.ledger_clock.now}


def test_an_undelivered_reannouncement_is_tried_again_at_the_next_rescan(rig: SensorRig) -> None:
    rig.drop("a.csv")
    rig.step()
    rig.detect()
    digest = hashlib.sha256(ROWS).hexdigest()
    announced_at = rig.ledger.get(digest).announced_at
    rig.ledger_clock.now += rig.settings.sensor.reannounce_after_seconds + 1
    rig.emitter.fail = lambda _batch: True
    rescan(rig)
    assert reannounced(rig) == []
    assert rig.ledger.get(digest).announced_at == announced_at, "its wait is not restarted"
    rig.emitter.fail = lambda _batch: False
    rescan(rig)
    assert len(reannounced(rig)) == 1


@pytest.fixture
def run_states() -> FakeRunStates:
    return FakeRunStates()


@pytest.fixture
def watched(settings: Settings, tmp_path: Path, run_states: FakeRunStates) -> Iterator[SensorRig]:
    """A rig whose sensor asks `run_states` whether the runs holding claims have ended."""
    settings.dirs.ensure()
    rig = SensorRig(settings, tmp_path, run_states)
    yield rig
    rig.ledger.close()


def claimed_by(rig: SensorRig, run_id: str, name: str, data: bytes) -> str:
    """Drop, detect and claim one file for `run_id`; its sha256."""
    rig.drop(name, data)
    rig.detect()
    (record,) = rig.ledger.claim_pending(run_id, ttl_seconds=3600)
    return record.sha256


def test_a_claim_whose_run_ended_is_released_and_announced_again_at_once(
    watched: SensorRig, run_states: FakeRunStates
) -> None:
    rig = watched
    rig.step()
    crashed = claimed_by(rig, "crashed-run", "a.csv", ROWS)
    running = claimed_by(rig, "running-run", "b.csv", OTHER_ROWS)
    run_states.ended_runs = {"crashed-run"}

    rescan(rig)  # well within the claims' time to live and the straggler wait
    assert sorted(run_states.asked) == ["crashed-run", "running-run"]
    released = rig.ledger.get(crashed)
    assert (released.state, released.claimed_by) == (FileState.ANNOUNCED, "crashed-run")
    kept = rig.ledger.get(running)
    assert (kept.state, kept.claimed_by) == (FileState.CLAIMED, "running-run")
    assert rig.ledger.claiming_runs() == {"running-run"}
    (again,) = reannounced(rig)
    assert (again.payload["sha256"], again.payload["waiting"]) == (crashed, 1)

    (reclaimed,) = rig.ledger.claim_pending("next-run", ttl_seconds=3600)
    assert (reclaimed.sha256, reclaimed.previous_claimed_by) == (crashed, "crashed-run")


def test_a_running_claim_is_kept_until_its_run_ends(
    watched: SensorRig, run_states: FakeRunStates
) -> None:
    rig = watched
    rig.step()
    digest = claimed_by(rig, "slow-run", "a.csv", ROWS)
    for _ in range(3):
        rescan(rig)
    assert run_states.asked == ["slow-run"] * 3
    assert rig.ledger.get(digest).state == FileState.CLAIMED
    assert reannounced(rig) == []

    run_states.ended_runs.add("slow-run")
    rescan(rig)
    assert rig.ledger.get(digest).state == FileState.ANNOUNCED
    assert rig.ledger.claiming_runs() == set()
    assert len(reannounced(rig)) == 1
