"""One `arrivals up` per home at a time: an flock on `<home>/run/up.lock`.

The kernel drops the lock when its holder exits, however it exits, so a crashed `up` never
leaves the home locked. The descriptor is not inherited (Python opens it close-on-exec), so
the services a detached `up` leaves running do not hold it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "up.lock"  # not *.pid: `down` takes every pid file for a service


class HomeBusy(RuntimeError):
    """Another `arrivals up` holds this home; the message names its pid."""


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file, or '?' before it has."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "?"


@contextmanager
def hold_home(run_dir: Path) -> Iterator[None]:
    """Hold this home's `up` lock for the block; HomeBusy at once if another process does."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HomeBusy(
                f"another `arrivals up` is starting or running this home (pid {_holder(fd)}); "
                "wait for it to return, or stop it first"
            ) from None
        # The pid first, then the length: a reader never sees an empty file, only a pid.
        pid = f"{os.getpid()}\n".encode()
        os.pwrite(fd, pid, 0)
        os.ftruncate(fd, len(pid))
        yield
    finally:
        os.close(fd)
