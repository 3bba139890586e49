"""The data folder's free space in `arrivals status`: shown when low, or when files wait for it.

The data folder (inbox, archive, quarantine, accepted copies) may sit on a filesystem of its
own. When it is full, a retrain leaves the files it cannot store pending with a
"waiting for space" note and takes them again once there is room (`consumer.ingest`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from shared.fs import free_space

log = logging.getLogger("arrivals.status")

# Low: under 1 % of the filesystem, and never under 1 MiB. Each accepted file takes about its
# own size again (its Parquet copy, holdout rows, bad rows), so 1 MiB is a few small batches;
# on a large disk 1 % still leaves time to act before the first file has to wait.
LOW_FRACTION = 0.01
LOW_FLOOR_BYTES = 1 << 20


def is_low(free: int, total: int) -> bool:
    """Whether `free` bytes of `total` is little enough to show (see LOW_FRACTION)."""
    return free < max(LOW_FLOOR_BYTES, total * LOW_FRACTION)


def disk_status(data: Path, waiting: int) -> dict[str, Any]:
    """`status --json`'s `disk`: the data folder, its free and total bytes, files waiting."""
    try:
        free, total = free_space(data)
    except OSError as error:  # not made yet (before `up`), or not mounted here: no figure
        log.debug("No free space for %s: %s", data, error)
        free = total = None
    return {
        "path": str(data),
        "free_bytes": free,
        "total_bytes": total,
        "waiting_for_space": waiting,
        "low": free is not None and total is not None and is_low(free, total),
    }


def binary_size(size: int | None) -> str:
    """Bytes as `0 B`, `512.0 KiB`, `64.0 MiB` (as `df -h` and `mount -o size=` count)."""
    if size is None:
        return "? B"
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def disk_line(disk: dict[str, Any] | None) -> str | None:
    """`data folder /d: 0 B free of 64.0 MiB; 12 files wait for space`; None if all is well."""
    if not disk or not (disk["low"] or disk["waiting_for_space"]):
        return None
    line = f"data folder {disk['path']}: {binary_size(disk['free_bytes'])} free"
    line += f" of {binary_size(disk['total_bytes'])}"
    waiting = disk["waiting_for_space"]
    if waiting:
        line += f"; {waiting} file{'s wait' if waiting != 1 else ' waits'} for space"
    return line


def disk_problem(disk: dict[str, Any] | None) -> str | None:
    """What `status --check` fails for: the data folder is full and files wait for it."""
    if not disk or not (disk["low"] and disk["waiting_for_space"]):
        return None
    return (
        f"the data folder {disk['path']} is full ({binary_size(disk['free_bytes'])} free) and "
        f"{disk['waiting_for_space']} file(s) wait for space: free some, they resume by themselves"
    )
