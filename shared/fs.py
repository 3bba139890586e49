"""File helpers: atomic writes, hashing, and which names count as temporary."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")
CSV_SUFFIXES = (".csv", ".csv.gz")  # what Arrivals reads; a .csv.gz is decompressed on the fly
OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})  # the filesystem, or the user's quota


def is_out_of_space(error: OSError) -> bool:
    """Whether `error` says the filesystem (or the writer's disk quota) is full."""
    return error.errno in OUT_OF_SPACE


def free_space(path: Path) -> tuple[int, int]:
    """(free, total) bytes of the filesystem holding `path`; free as an unprivileged writer
    may still use it (statvfs `f_bavail`)."""
    usage = shutil.disk_usage(path)
    return usage.free, usage.total


def is_temp_name(name: str) -> bool:
    """Names that editors, browsers and copy tools use while a file is still being written."""
    return name.startswith((".", "~$")) or name.endswith(TEMP_SUFFIXES)


def is_csv_name(name: str) -> bool:
    """A name Arrivals reads as data: `.csv` or `.csv.gz`, in any case."""
    return name.lower().endswith(CSV_SUFFIXES)


def is_candidate(name: str) -> bool:
    """A file the sensor records as data: a CSV (or gzipped CSV) that is not a temp name."""
    return not is_temp_name(name) and is_csv_name(name)


def split_suffix(name: str) -> tuple[str, str]:
    """`(stem, suffix)`, keeping `.csv.gz` whole so a renamed copy stays readable."""
    if name.lower().endswith(".csv.gz"):
        return name[: -len(".csv.gz")], name[-len(".csv.gz") :]
    path = Path(name)
    return path.stem, path.suffix


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename into place.

    A failure leaves no temp file behind, and its OSError names `path` (a rename names both).
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # half-written: never left where it can be read
            raise
    except OSError as error:
        # The temp name means nothing to whoever reads this (a full disk's note, a log).
        if error.errno and error.filename2 is None:
            error.filename = str(path)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def atomic_copy(source: Path, destination: Path) -> None:
    """Copy under a temp name in the destination folder, then rename into place."""
    fd, tmp = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unique_destination(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/stem-N.suffix` when that exists: nothing is overwritten."""
    candidate = folder / name
    stem, suffix = split_suffix(name)
    counter = 1
    while candidate.exists():
        candidate = folder / f"{stem}-{counter}{suffix}"
        counter += 1
    return candidate


def move_into(source: Path, folder: Path, name: str | None = None) -> Path:
    """Move a file into `folder` without overwriting anything; returns the new path."""
    folder.mkdir(parents=True, exist_ok=True)
    destination = unique_destination(folder, name or source.name)
    os.replace(source, destination)
    return destination


def is_within(path: Path, folder: Path) -> bool:
    """True when `path`, symlinks resolved, lies inside `folder`."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
