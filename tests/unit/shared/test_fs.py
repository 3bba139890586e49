"""File helpers: temp names, atomic writes, moves that never overwrite, containment."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from shared import fs
from tests.support.full_disk import FullDisk


@pytest.mark.parametrize(
    ("name", "temp", "candidate"),
    [
        (".x.csv", True, False),
        ("x.csv.part", True, False),
        ("~$x.csv", True, False),
        ("x.csv~", True, False),
        ("x.tmp", True, False),
        ("x.csv.tmp", True, False),
        ("x.crdownload", True, False),
        ("x.csv.crdownload", True, False),
        ("x.csv.swp", True, False),
        ("x.csv.partial", True, False),
        ("notes.txt", False, False),
        ("data.CSV", False, True),
        ("tips_batch_001.csv", False, True),
        ("my data (final).csv", False, True),
        ("csv", False, False),
        ("export.csv.gz", False, True),
        ("EXPORT.CSV.GZ", False, True),
        ("archive.gz", False, False),
        ("export.csv.gz.part", True, False),
    ],
)
def test_temp_names_and_candidates(name: str, temp: bool, candidate: bool) -> None:
    assert fs.is_temp_name(name) is temp
    assert fs.is_candidate(name) is candidate


def test_sha256_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert fs.sha256_file(path) == expected
    assert fs.sha256_file(path, chunk=7) == expected


def test_atomic_write_json_round_trips_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "state.json"
    fs.atomic_write_json(target, {"produced": [{"batch": 1}], "when": Path("/x")})
    fs.atomic_write_json(target, {"produced": [{"batch": 1}, {"batch": 2}]})
    assert fs.read_json(target, None) == {"produced": [{"batch": 1}, {"batch": 2}]}
    assert sorted(p.name for p in target.parent.iterdir()) == ["state.json"]


def test_read_json_default_when_missing(tmp_path: Path) -> None:
    assert fs.read_json(tmp_path / "missing.json", {"default": True}) == {"default": True}


def test_failed_atomic_write_keeps_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "data.txt"
    target.write_text("old", encoding="utf-8")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fs.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        fs.atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.txt"]


def test_an_atomic_write_on_a_full_disk_leaves_nothing_and_names_its_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = FullDisk(monkeypatch)
    full.fill(lambda _path: True)
    target = tmp_path / "accepted" / "x.parquet"
    with pytest.raises(OSError) as raised:
        fs.atomic_write_bytes(target, b"rows" * 10_000)
    assert fs.is_out_of_space(raised.value)
    assert raised.value.filename == str(target), "not the temp file's name"
    assert list(target.parent.iterdir()) == [], "no temp file, no half-written target"


def test_atomic_write_uses_a_temp_name_the_sensor_ignores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(fs.os, "replace", spy)
    fs.atomic_write_text(tmp_path / "batch.csv", "a,b\n1,2\n")
    ((src, dst),) = seen
    assert dst == tmp_path / "batch.csv"
    assert src.parent == tmp_path, "same folder, so the rename is atomic"
    assert not fs.is_candidate(src.name)


def test_atomic_copy(tmp_path: Path) -> None:
    source = tmp_path / "a.csv"
    source.write_bytes(b"x,y\n1,2\n")
    (tmp_path / "out").mkdir()
    destination = tmp_path / "out" / "b.csv"
    fs.atomic_copy(source, destination)
    assert destination.read_bytes() == source.read_bytes()
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b.csv"]


def test_move_into_never_overwrites(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    moved = []
    for content in (b"first", b"second", b"third"):
        source = tmp_path / "a.csv"
        source.write_bytes(content)
        moved.append(fs.move_into(source, folder))
        assert not source.exists()
    assert len(set(moved)) == 3
    assert [p.read_bytes() for p in moved] == [b"first", b"second", b"third"]
    assert all(p.parent == folder and p.suffix == ".csv" for p in moved)
    assert moved[0].name == "a.csv"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in moved)


def test_move_into_with_a_new_name(tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("1", encoding="utf-8")
    moved = fs.move_into(source, tmp_path / "q", "renamed.csv")
    assert moved == tmp_path / "q" / "renamed.csv"
    assert moved.read_text(encoding="utf-8") == "1"


def test_unique_destination(tmp_path: Path) -> None:
    assert fs.unique_destination(tmp_path, "a.csv") == tmp_path / "a.csv"
    (tmp_path / "a.csv").touch()
    second = fs.unique_destination(tmp_path, "a.csv")
    assert second != tmp_path / "a.csv" and not second.exists()
    second.touch()
    third = fs.unique_destination(tmp_path, "a.csv")
    assert third not in (tmp_path / "a.csv", second) and not third.exists()


def test_a_renamed_gzipped_csv_keeps_its_whole_suffix(tmp_path: Path) -> None:
    (tmp_path / "a.csv.gz").touch()
    assert fs.unique_destination(tmp_path, "a.csv.gz") == tmp_path / "a-1.csv.gz"
    assert fs.split_suffix("report.json") == ("report", ".json")
    assert fs.split_suffix("README") == ("README", "")


def test_is_within_plain_paths_and_dotdot(tmp_path: Path) -> None:
    inbox = tmp_path / "data" / "inbox"
    inbox.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    assert fs.is_within(inbox / "a.csv", tmp_path / "data")
    assert fs.is_within(inbox / "a.csv", inbox)
    assert fs.is_within(inbox, inbox)
    assert not fs.is_within(inbox / ".." / ".." / "outside" / "a.csv", tmp_path / "data")
    assert not fs.is_within(tmp_path / "data-other" / "a.csv", tmp_path / "data")
    assert not fs.is_within(Path("/etc/passwd"), tmp_path)


def test_is_within_follows_symlinks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    secret = tmp_path / "secret.csv"
    secret.write_text("x", encoding="utf-8")
    inside_target = data / "real.csv"
    inside_target.write_text("y", encoding="utf-8")
    escaping = data / "link.csv"
    escaping.symlink_to(secret)
    pointing_in = tmp_path / "shortcut.csv"
    pointing_in.symlink_to(inside_target)
    assert not fs.is_within(escaping, data)
    assert fs.is_within(pointing_in, data)
