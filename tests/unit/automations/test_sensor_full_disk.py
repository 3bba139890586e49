"""The sensor with a full data folder (issue 16): the ledger lives elsewhere, so it keeps
recording and announcing arrivals; what it moves within the data folder is a rename, and
what the full disk prevents (a sidecar, a new folder) is logged, never raised."""

from __future__ import annotations

import errno
import hashlib
import logging
from pathlib import Path

import pytest

import automations.set_aside as set_aside
from shared import events
from shared.ledger import FileState
from tests.support.data import OTHER_ROWS, ROWS
from tests.support.full_disk import FullDisk, temp_files
from tests.support.rigs import SensorRig


def test_a_refusal_with_no_room_for_its_sidecar_is_still_quarantined_and_recorded(
    rig: SensorRig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    FullDisk(monkeypatch).fill(lambda _path: True)  # the whole data folder
    data = b'{"not": "a table"}\n'
    rig.drop("report.json", data)
    rig.step()
    with caplog.at_level(logging.WARNING, logger="arrivals.sensor"):
        rig.detect()  # no error: the sensor goes on

    quarantined = rig.settings.dirs.quarantine / "report.json"
    assert quarantined.read_bytes() == data, "renamed: a rename needs no room"
    assert not quarantined.with_name("report.json.reason.json").exists()
    assert temp_files(rig.settings.dirs.data) == []
    record = rig.ledger.get(hashlib.sha256(data).hexdigest())
    assert (record.state, record.stored_path) == (FileState.REJECTED, str(quarantined))
    (event,) = rig.emitter.named(events.FILE_REJECTED)
    assert event.payload["quarantine_path"] == str(quarantined)
    assert "No report.json.reason.json (the reason is in the ledger)" in caplog.text

    rig.drop("tips.csv")  # and it keeps recording arrivals
    rig.detect()
    (arrived,) = rig.emitter.named(events.FILE_ARRIVED)
    assert arrived.payload["name"] == "tips.csv"
    assert rig.ledger.get(hashlib.sha256(ROWS).hexdigest()).state == FileState.ANNOUNCED


def test_a_duplicate_with_no_room_to_move_stays_in_the_inbox_recorded_there(
    rig: SensorRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.drop("a.csv")
    rig.step()
    rig.detect()

    def no_room(source: Path, folder: Path, name: str | None = None) -> Path:
        # archive/duplicates/ is made on the first duplicate: a new folder needs room.
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))

    monkeypatch.setattr(set_aside, "move_into", no_room)
    copy = rig.drop("copy.csv")
    rig.detect()  # no error
    assert copy.exists()
    (event,) = rig.emitter.named(events.FILE_DUPLICATE)
    assert event.payload["path"] == str(copy), "the ledger says where it is"
    rig.step(rig.settings.sensor.rescan_seconds)
    rig.detect()
    assert len(rig.ledger.arrivals()) == 2, "recorded once, not again at each rescan"

    rig.drop("b.csv", OTHER_ROWS)  # new content is still recorded and announced
    rig.detect()
    assert [e.payload["name"] for e in rig.emitter.named(events.FILE_ARRIVED)] == [
        "a.csv",
        "b.csv",
    ]


def test_a_refusal_with_no_room_to_move_stays_in_the_inbox_with_no_sidecar_there(
    rig: SensorRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_room(source: Path, folder: Path, name: str | None = None) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))

    monkeypatch.setattr(set_aside, "move_into", no_room)
    path = rig.drop("notes.txt")
    rig.step()
    rig.detect()
    assert sorted(p.name for p in rig.inbox.iterdir()) == ["notes.txt"], "no sidecar beside it"
    record = rig.ledger.get(hashlib.sha256(ROWS).hexdigest())
    assert (record.state, record.stored_path) == (FileState.REJECTED, str(path))
    (event,) = rig.emitter.named(events.FILE_REJECTED)
    assert event.payload["quarantine_path"] == str(path), "where it is"
    rig.step(rig.settings.sensor.rescan_seconds)
    rig.detect()
    assert len(rig.ledger.arrivals()) == 1, "recorded once"


def test_any_other_error_moving_a_refusal_is_raised(
    rig: SensorRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(source: Path, folder: Path, name: str | None = None) -> Path:
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))

    monkeypatch.setattr(set_aside, "move_into", denied)
    rig.drop("notes.txt")
    rig.step()
    with pytest.raises(PermissionError):
        rig.detect()
