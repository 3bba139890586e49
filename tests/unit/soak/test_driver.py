"""The soak's driver and report: files whole or not at all, each kind what it claims to be,
the verdict line exactly as the issue spells it."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from consumer.validate import Rejected, validate_csv
from shared.dataset import training_pool
from shared.settings import Settings
from soak import driver as driver_module
from soak.chaos import children_of
from soak.driver import Driver, Plan, malformed_content
from soak.invariants import Findings
from soak.report import verdict_line


@pytest.fixture
def pool(settings: Settings):
    return training_pool(settings.dataset, settings.holdout)


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def test_every_kind_lands_whole_with_its_sha_and_expectation(inbox, pool, settings) -> None:
    drops = Driver(inbox, pool, seed=3, plan=Plan(rows=(5, 9)))
    for _ in range(40):
        drops.drop_one()
    drops.burst()
    for _ in range(100):  # slow writes finish in their own threads
        if len(drops.log.delivered) == drops.number:
            break
        drops._stop.wait(0.1)
    assert len(drops.log.delivered) == drops.number, "every drop is recorded once whole"
    kinds = {d.kind for d in drops.log.delivered}
    assert {"good", "malformed", "duplicate", "burst"} <= kinds
    for delivered in drops.log.delivered:
        data = (inbox / delivered.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == delivered.sha256
    goods = [d.sha256 for d in drops.log.delivered if d.kind in ("good", "slow", "burst")]
    assert len(goods) == len(set(goods)), "new content is new"
    originals = set(goods)
    assert all(d.sha256 in originals for d in drops.log.delivered if d.kind == "duplicate")
    assert not [p for p in inbox.iterdir() if p.name.startswith(".")], "no temp file left"


@pytest.mark.parametrize("number", [0, 1, 2])
def test_each_malformed_sort_is_rejected_by_the_retrains_validation(
    number, pool, settings, tmp_path
) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(malformed_content(pool, np.random.default_rng(number), number))
    with pytest.raises(Rejected):
        validate_csv(path, settings.dataset)


def test_a_full_disk_refuses_the_drop_and_leaves_nothing(inbox, pool, monkeypatch) -> None:
    drops = Driver(inbox, pool, seed=1)

    def full(self, data):
        os.close(os.open(self, os.O_CREAT | os.O_WRONLY))  # created, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    drops.put("a.csv", b"x", "good")
    assert drops.log.refused == ["a.csv"] and drops.log.delivered == []
    assert list(inbox.iterdir()) == []


def test_a_slow_write_cut_by_a_full_disk_is_removed(inbox, pool, monkeypatch) -> None:
    drops = Driver(inbox, pool, seed=1)
    monkeypatch.setattr(driver_module, "SLOW_PAUSE", 0.0)
    real_fsync = os.fsync
    calls = []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(driver_module.os, "fsync", fsync)
    drops.put_slowly("s.csv", b"a,b\n" * 100)
    assert drops.log.refused == ["s.csv"] and list(inbox.iterdir()) == []


def test_other_write_errors_are_not_taken_for_a_full_disk(inbox, pool, monkeypatch) -> None:
    drops = Driver(inbox, pool, seed=1)

    def denied(self, data):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "write_bytes", denied)
    with pytest.raises(PermissionError):
        drops.put("a.csv", b"x", "good")


def test_the_verdict_line_is_exactly_the_issues() -> None:
    data = {
        "files": 312,
        "faults": 24,
        "lost": [],
        "duplicated": ["x"],
        "invariants": "ok",
    }
    assert verdict_line(data) == "soak: 312 files, 24 faults, lost 0, duplicated 1, invariants ok"
    assert Findings([], [], [], {}).violations == []


def test_children_of_finds_a_child_process_and_only_children() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        found = children_of(os.getpid())
        assert child.pid in found
        assert os.getpid() not in found
    finally:
        child.kill()
        child.wait()
