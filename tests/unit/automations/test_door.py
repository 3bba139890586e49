"""What the sensor refuses at the door, and the reasons people read. Pure, plus real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from automations.door import not_csv_reason, quarantine, special_key, special_reason


@pytest.mark.parametrize("name", ["a.csv", "A.CSV", "export.csv.gz", "Export.Csv.Gz"])
def test_csv_names_are_not_refused(name: str) -> None:
    assert not_csv_reason(name) is None


@pytest.mark.parametrize("name", ["report.json", "notes.txt", "data.xlsx", "archive.gz", "README"])
def test_other_names_get_a_reason_naming_the_file_and_what_is_read(name: str) -> None:
    assert not_csv_reason(name) == (f"not a CSV: {name}; Arrivals reads .csv and .csv.gz files")


def test_special_files_get_a_reason_and_a_key_of_their_own(tmp_path: Path) -> None:
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    one.symlink_to(tmp_path / "target.csv")
    two.symlink_to(tmp_path / "target.csv")
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert "symbolic link" in special_reason(one.name, one.lstat())
    assert "not a regular file" in special_reason(fifo.name, fifo.lstat())
    keys = {special_key(p, p.lstat()) for p in (one, two, fifo)}
    assert len(keys) == 3, "two links to one target are still two files"
    assert special_key(one, one.lstat()) == special_key(one, one.lstat()), "stable per object"


def test_quarantine_moves_without_overwriting_and_writes_the_sidecar(tmp_path: Path) -> None:
    folder = tmp_path / "quarantine"
    for body in (b"first", b"second"):
        source = tmp_path / "report.json"
        source.write_bytes(body)
        where = quarantine(source, folder, sha256="ab" * 32, reason="not a CSV: report.json")
        assert not source.exists()
        sidecar = json.loads(where.with_name(where.name + ".reason.json").read_text())
        assert sidecar["reason"] == "not a CSV: report.json"
        assert sidecar["file"] == "report.json" and sidecar["rejected_by"] == "sensor"
    assert (folder / "report.json").read_bytes() == b"first"
    assert (folder / "report-1.json").read_bytes() == b"second"
