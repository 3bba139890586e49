"""Settler: when a file in the inbox is complete. Time is passed in; files are real."""

from __future__ import annotations

from pathlib import Path

import pytest

from automations.sensor import CLOSED, CREATED, MODIFIED, MOVED, SCANNED, Settler

SETTLE = 0.5
GRACE = 10.0


@pytest.fixture
def settler() -> Settler:
    return Settler(settle_seconds=SETTLE, open_grace_seconds=GRACE)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "drop.csv"
    path.write_bytes(b"a,b\n1,2\n")
    return path


def grow(path: Path, data: bytes = b"3,4\n") -> None:
    with path.open("ab") as handle:
        handle.write(data)


def test_closed_file_is_ready_at_once(settler: Settler, path: Path) -> None:
    settler.notice(path, CLOSED, 100.0)
    assert path in settler
    assert settler.ready(100.0) == [(path, "push")]
    assert path not in settler and len(settler) == 0
    assert settler.ready(200.0) == [], "a ready file is handed out once"


def test_moved_into_place_is_ready_at_once(settler: Settler, path: Path) -> None:
    settler.notice(path, MOVED, 5.0)
    assert settler.ready(5.0) == [(path, "push")]


def test_created_then_closed_is_ready_at_once(settler: Settler, path: Path) -> None:
    settler.notice(path, CREATED, 0.0)
    assert settler.ready(0.0) == []
    grow(path)
    settler.notice(path, MODIFIED, 0.1)
    settler.notice(path, CLOSED, 0.2)
    assert settler.ready(0.2) == [(path, "push")]


def test_growing_file_open_for_writing_waits_for_the_grace(settler: Settler, path: Path) -> None:
    settler.notice(path, CREATED, 0.0)
    settler.notice(path, MODIFIED, 0.5)  # the first write: it is being written
    for now in (1.0, 2.0, 3.0):  # the writer keeps appending; later events may be coalesced
        grow(path)
        assert settler.ready(now) == [], f"still growing at {now}"
    # Quiet since t=3, longer than settle_seconds but the writer never closed the file.
    assert settler.ready(3.0 + SETTLE + 0.1) == []
    assert settler.ready(3.0 + GRACE - 0.1) == []
    assert settler.ready(3.0 + GRACE) == [(path, "push")]


def test_growth_restarts_the_wait(settler: Settler, path: Path) -> None:
    settler.notice(path, CREATED, 0.0)
    settler.notice(path, MODIFIED, 0.0)
    assert settler.ready(GRACE - 1) == []
    grow(path)
    assert settler.ready(GRACE - 0.5) == []
    assert settler.ready(GRACE + 0.5) == [], "the grace counts from the last change"
    assert settler.ready(GRACE - 0.5 + GRACE) == [(path, "push")]


def test_moved_in_from_another_folder_settles_quickly(settler: Settler, path: Path) -> None:
    # `mv` from outside the inbox: inotify says only Created, and the file is complete.
    settler.notice(path, CREATED, 0.0)
    assert settler.ready(SETTLE * 0.5) == []
    assert settler.ready(SETTLE) == [(path, "push")]


def test_created_empty_file_waits_for_its_writer(settler: Settler, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    settler.notice(empty, CREATED, 0.0)
    assert settler.ready(SETTLE + 0.1) == [], "an empty file is a writer that has not written"
    assert settler.ready(GRACE) == [(empty, "push")]


def test_modified_after_closed_is_not_complete_anymore(settler: Settler, path: Path) -> None:
    settler.notice(path, CLOSED, 0.0)
    settler.notice(path, MODIFIED, 0.0)  # reopened and written before we looked
    assert settler.ready(0.0) == []


def test_scanned_file_is_ready_after_settle_seconds(settler: Settler, path: Path) -> None:
    settler.notice(path, SCANNED, 10.0)
    assert settler.ready(10.0) == []
    assert settler.ready(10.0 + SETTLE * 0.8) == []
    assert settler.ready(10.0 + SETTLE) == [(path, "scan")]


def test_scanned_file_that_changes_waits_again(settler: Settler, path: Path) -> None:
    settler.notice(path, SCANNED, 0.0)
    assert settler.ready(0.3) == []
    grow(path)
    assert settler.ready(0.4) == []
    assert settler.ready(0.4 + SETTLE * 0.8) == [], "the settle counts from the change"
    assert settler.ready(0.4 + SETTLE) == [(path, "scan")]


def test_a_rescan_does_not_reset_or_downgrade_a_followed_file(settler: Settler, path: Path) -> None:
    settler.notice(path, SCANNED, 0.0)
    settler.notice(path, SCANNED, SETTLE * 0.9)
    assert settler.ready(SETTLE) == [(path, "scan")]

    settler.notice(path, CLOSED, 20.0)
    settler.notice(path, SCANNED, 20.0)
    assert settler.ready(20.0) == [(path, "push")]


def test_deleted_file_is_forgotten(settler: Settler, path: Path) -> None:
    settler.notice(path, SCANNED, 0.0)
    path.unlink()
    assert settler.ready(SETTLE * 10) == []
    assert path not in settler and len(settler) == 0


def test_deleted_closed_file_is_forgotten(settler: Settler, path: Path) -> None:
    settler.notice(path, CLOSED, 0.0)
    path.unlink()
    assert settler.ready(0.0) == []
    assert len(settler) == 0


def test_forget(settler: Settler, path: Path) -> None:
    settler.notice(path, CLOSED, 0.0)
    settler.forget(path)
    settler.forget(path)  # forgetting twice is harmless
    assert settler.ready(0.0) == []


def test_several_files_are_independent(settler: Settler, tmp_path: Path) -> None:
    done, slow, gone = (tmp_path / name for name in ("done.csv", "slow.csv", "gone.csv"))
    for p in (done, slow, gone):
        p.write_text("x\n", encoding="utf-8")
    settler.notice(done, CLOSED, 0.0)
    settler.notice(slow, SCANNED, 0.0)
    settler.notice(gone, SCANNED, 0.0)
    gone.unlink()
    assert settler.ready(0.0) == [(done, "push")]
    assert settler.ready(SETTLE) == [(slow, "scan")]
    assert len(settler) == 0
