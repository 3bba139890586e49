"""What the sensor turns away at the door, and the reason a person reads for it.

Every complete file in the inbox that is not a temp name ends in exactly one count of
`arrivals status`. A CSV goes on to a retrain; anything else is refused here: a symbolic
link or a special file (never opened: it could point anywhere), or a file that is not a CSV.
A refused file is recorded in the ledger as rejected, moved to the quarantine folder with a
`.reason.json` sidecar (as a retrain's rejection is), and announced as `inbox.file.rejected`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from shared.fs import CSV_SUFFIXES, atomic_write_json, is_csv_name, move_into


def not_csv_reason(name: str) -> str | None:
    """Why a regular file named `name` is not read, or None: it is a CSV."""
    if is_csv_name(name):
        return None
    return f"not a CSV: {name}; Arrivals reads {' and '.join(CSV_SUFFIXES)} files"


def special_reason(name: str, st: os.stat_result) -> str:
    """Why a file that is not a regular file (a link, a pipe, a folder) is not read."""
    kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
    return f"{name} is {kind}; only regular files are read (copy the data itself)"


def special_key(path: Path, st: os.stat_result) -> str:
    """A ledger key for a file whose content is never read: unique to this very object.

    The ledger keys files by content, but a link or a pipe is not opened (its target could
    be anything). Its own identity (name, kind, link target, inode, mtime) stands in, so it
    is recorded once and never mistaken for a duplicate of data.
    """
    target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
    identity = f"special\0{path.name}\0{stat.S_IFMT(st.st_mode)}\0{target}\0{st.st_ino}"
    return hashlib.sha256(f"{identity}\0{st.st_mtime_ns}".encode()).hexdigest()


def release_hint(name: str, reason: str) -> str:
    """What a person does to let a refused file in after all."""
    if reason.startswith("not a CSV"):
        return (
            "if it is CSV text, rename it to .csv in the quarantine folder, then: "
            "arrivals release <new name> (it stays here otherwise)"
        )
    return f"copy the data itself into the inbox as a regular file ({name} stays here)"


def quarantine(path: Path, folder: Path, *, sha256: str, reason: str) -> Path:
    """Move `path` into `folder` (never overwriting) with its `.reason.json`; the new path."""
    where = move_into(path, folder, path.name)
    atomic_write_json(
        where.with_name(where.name + ".reason.json"),
        {
            "file": path.name,
            "sha256": sha256,
            "reason": reason,
            "rejected_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "rejected_by": "sensor",
            "release": release_hint(path.name, reason),
        },
    )
    return where
