"""Ingest's guards (consumer.ingest.ingest): a file is read only through its ledger row, and
only when the recorded path is a regular file inside the data folder. Anything else is
refused unread, with its reason in the ledger, the quarantine and an event."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from consumer.ingest import ingest
from shared.events import FILE_REJECTED
from shared.ledger import FileRecord, FileState
from shared.settings import Settings
from tests.support.rigs import RetrainRig

ROWS = "total_bill,tip,sex,smoker,day,time,size\n16.99,1.01,Female,No,Sun,Dinner,2\n"


@pytest.fixture
def rig(settings: Settings):
    rig = RetrainRig(settings)
    yield rig
    rig.ledger.close()


def _claimed(rig: RetrainRig, name: str, path: Path, sha: str) -> FileRecord:
    """A file recorded at `path` (as if by the sensor), announced, claimed by this run."""
    arrival = rig.ledger.record_arrival(
        name=name, path=str(path), size=len(ROWS), sha256=sha, detected_via="push"
    )
    rig.ledger.mark_announced(arrival.id)
    (record,) = rig.ledger.claim_pending("run-guard", ttl_seconds=60)
    return record


def _refused(rig: RetrainRig, record: FileRecord) -> str:
    """Ingest the record, expect a refusal; its reason, checked in every place it goes."""
    ctx = rig.context("run-guard")
    assert ingest(ctx, record) is None
    row = rig.ledger.get(record.sha256)
    assert row.state == FileState.REJECTED
    sidecar = json.loads((rig.settings.dirs.quarantine / f"{record.name}.reason.json").read_text())
    assert (sidecar["sha256"], sidecar["reason"]) == (record.sha256, row.reason)
    (event,) = rig.emitter.named(FILE_REJECTED)
    assert event.payload["reason"] == row.reason
    return row.reason


def test_a_path_outside_the_data_folder_is_refused_unread(rig: RetrainRig, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "secret.csv"
    outside.parent.mkdir()
    outside.write_text(ROWS)
    record = _claimed(rig, "secret.csv", outside, "a" * 64)
    reason = _refused(rig, record)
    assert reason == f"recorded path {outside} is outside {rig.settings.dirs.data}"
    assert outside.read_text() == ROWS  # not moved, not touched
    # The ledger stops pointing at it: a later read (release, load_accepted) finds nothing.
    assert rig.ledger.get(record.sha256).stored_path == "/nonexistent"
    assert not (rig.settings.dirs.quarantine / "secret.csv").exists()


def test_a_symlink_out_of_the_data_folder_is_refused_and_its_target_left_alone(
    rig: RetrainRig, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere" / "secret.csv"
    target.parent.mkdir()
    target.write_text(ROWS)
    link = rig.settings.dirs.inbox / "link.csv"
    link.symlink_to(target)
    record = _claimed(rig, "link.csv", link, "b" * 64)
    assert _refused(rig, record).startswith(f"recorded path {link} is outside")
    assert link.is_symlink() and target.read_text() == ROWS


def test_a_symlink_within_the_data_folder_is_refused_too(rig: RetrainRig) -> None:
    """A link is never followed, even to a file the folder holds: only the sensor's copies."""
    target = rig.settings.dirs.archive / "real.csv"
    target.write_text(ROWS)
    link = rig.settings.dirs.inbox / "link.csv"
    link.symlink_to(target)
    record = _claimed(rig, "link.csv", link, "c" * 64)
    assert _refused(rig, record).startswith(f"recorded path {link} is outside")
    assert link.is_symlink() and target.read_text() == ROWS


def test_a_vanished_file_is_refused_with_where_it_was(rig: RetrainRig) -> None:
    gone = rig.settings.dirs.inbox / "gone.csv"
    record = _claimed(rig, "gone.csv", gone, "d" * 64)
    assert _refused(rig, record) == f"file vanished from {gone} before it could be read"
    assert list(rig.settings.dirs.inbox.iterdir()) == []  # no sidecar where the sensor looks


def test_a_file_inside_the_data_folder_passes_the_guards(rig: RetrainRig) -> None:
    """The control: the same rows at a sensor-recorded inbox path are read and archived."""
    path = rig.settings.dirs.inbox / "fine.csv"
    path.write_text(ROWS)
    record = _claimed(rig, "fine.csv", path, "e" * 64)
    accepted = ingest(rig.context("run-guard"), record)
    assert accepted is not None
    assert accepted.path.parent == rig.settings.dirs.archive
    assert pd.read_csv(accepted.path).shape == (1, 7)
    assert rig.emitter.named(FILE_REJECTED) == []
