"""`arrivals status` on a full data folder (issue 16): a DISK line when space is low or files
wait for it, a `disk` object in `--json`, and `--check` failing while files wait on a full disk."""

from __future__ import annotations

import json
from typing import Any

import pytest

import arrivals.disk as disk_module
from arrivals.cli import main
from arrivals.disk import disk_line, disk_problem, is_low
from arrivals.status import check_status, collect_status
from shared.ledger import Ledger
from shared.settings import Settings

MIB = 1 << 20


@pytest.fixture
def space(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """The data folder's filesystem, as the status reads it: change `free` and `total`."""
    figures = {"free": 0, "total": 64 * MIB}
    monkeypatch.setattr(
        disk_module, "free_space", lambda _path: (figures["free"], figures["total"])
    )
    return figures


def waiting_file(settings: Settings, note: str) -> None:
    """A pending file a run could not store, as the retrain leaves it (released, with a note)."""
    ledger = Ledger(settings.ledger_url)
    try:
        arrival = ledger.record_arrival(
            name="big.csv", path="/inbox/big.csv", size=1, sha256="f" * 64, detected_via="push"
        )
        ledger.mark_announced(arrival.id)
        ledger.claim_pending("run-1", ttl_seconds=300)
        ledger.set_note("f" * 64, note)
        assert ledger.release_waiting("run-1") == 1
    finally:
        ledger.close()


def test_a_full_data_folder_with_a_file_waiting_shows_and_fails_the_check(
    settings: Settings, healthy: None, space: dict[str, int], capsys
) -> None:
    settings.dirs.ensure()
    data = settings.dirs.data
    note = f"waiting for space: {data} is full (no space left on device writing accepted/x)"
    waiting_file(settings, note)

    assert main(["status", "--json"]) == 0
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert printed["disk"] == {
        "path": str(data),
        "free_bytes": 0,
        "total_bytes": 64 * MIB,
        "waiting_for_space": 1,
        "low": True,
    }
    assert printed["files"]["pending"] == 1, "the contract's counts are unchanged"
    (recent,) = printed["recent"]
    assert (recent["outcome"], recent["note"]) == ("pending", note)

    assert main(["status"]) == 0
    text = capsys.readouterr().out
    assert f"DISK        data folder {data}: 0 B free of 64.0 MiB; 1 file waits for space" in text

    assert main(["status", "--check"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"FAIL: the data folder {data} is full (0 B free) and 1 file(s) wait")
    assert len(out.splitlines()) == 1

    space["free"] = 32 * MIB  # space is back: the file resumes at the sensor's next sweep
    assert main(["status", "--check"]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    assert "32.0 MiB free of 64.0 MiB; 1 file waits for space" in capsys.readouterr().out


def test_the_disk_object_reads_the_real_filesystem(settings: Settings) -> None:
    assert collect_status(settings, recent=0)["disk"]["free_bytes"] is None, "before `up`"
    settings.dirs.ensure()
    disk = collect_status(settings, recent=0)["disk"]
    assert disk["path"] == str(settings.dirs.data)
    assert 0 < disk["free_bytes"] <= disk["total_bytes"]
    assert disk["waiting_for_space"] == 0


@pytest.mark.parametrize(
    ("free", "total", "low"),
    [
        (MIB - 1, 64 * MIB, True),  # under the 1 MiB floor
        (MIB, 64 * MIB, False),
        (99 * MIB, 10_000 * MIB, True),  # under 1 %
        (100 * MIB, 10_000 * MIB, False),
    ],
)
def test_low_is_under_one_percent_and_never_under_one_mib(free: int, total: int, low: bool) -> None:
    assert is_low(free, total) is low


def disk(free: int, total: int, waiting: int) -> dict[str, Any]:
    return {
        "path": "/d",
        "free_bytes": free,
        "total_bytes": total,
        "waiting_for_space": waiting,
        "low": is_low(free, total),
    }


def test_the_disk_line_shows_only_when_space_is_low_or_files_wait() -> None:
    assert disk_line(disk(10 * MIB, 64 * MIB, 0)) is None
    assert disk_line(None) is None, "a status from before the disk object"
    assert disk_line(disk(512 * 1024, 64 * MIB, 0)) == "data folder /d: 512.0 KiB free of 64.0 MiB"
    assert disk_line(disk(10 * MIB, 64 * MIB, 12)) == (
        "data folder /d: 10.0 MiB free of 64.0 MiB; 12 files wait for space"
    )


def test_the_check_fails_only_when_the_folder_is_full_and_files_wait() -> None:
    assert disk_problem(disk(0, 64 * MIB, 0)) is None, "full, but nothing waits yet"
    assert disk_problem(disk(10 * MIB, 64 * MIB, 3)) is None, "room again: they resume"
    assert disk_problem(disk(0, 64 * MIB, 3)) is not None
    status = {
        "services": {"sensor": {"healthy": True, "pid": 1}},
        "files": {"pending": 3},
        "oldest_pending_age_seconds": 5.0,
        "disk": disk(0, 64 * MIB, 3),
    }
    healthy, line = check_status(status, 600)
    assert not healthy and "is full (0 B free) and 3 file(s) wait for space" in line
