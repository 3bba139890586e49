"""The soak's small filesystem for the data folder, filled and freed on cue; and its own Redis.

The data folder sits on a size-limited tmpfs (the machine runs as root) for the whole run, so
filling it takes a moment and freeing it is one unlink. Both are stopped by the soak, by pid
or by unmount, whatever happens.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

from arrivals.harness import free_ports, wait_for
from arrivals.processes import port_in_use, stop_group

log = logging.getLogger("soak.disk")
FILLER = ".soak-filler"  # hidden: never taken for an arrival, and outside the inbox anyway
CHUNK = 1 << 20
NO_DISK = ("--save", "", "--appendonly", "no")  # restarted empty, as the machine's Redis is


class DiskError(RuntimeError):
    """The small filesystem could not be mounted (not root, no tmpfs): the message says so."""


class SmallDisk:
    """A tmpfs of `size_mb` MiB mounted at `path` until `unmount()`."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        self.size_mb = size_mb
        self.mounted = False

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DiskError(f"cannot mount a tmpfs at {self.path}: {result.stderr.strip()}")
        self.mounted = True
        log.info("Data folder on a %d MiB tmpfs at %s", self.size_mb, self.path)

    def fill(self) -> int:
        """Write a filler file until the filesystem refuses more; the bytes written."""
        written = 0
        block = b"\0" * CHUNK
        with (self.path / FILLER).open("wb") as handle:
            while True:
                try:
                    handle.write(block)
                    handle.flush()
                    written += CHUNK
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
        log.info("Filled the data folder: %.1f MiB of filler", written / CHUNK)
        return written

    def free(self) -> None:
        (self.path / FILLER).unlink(missing_ok=True)
        log.info("Freed the data folder")

    def unmount(self) -> None:
        if not self.mounted:
            return
        for _ in range(10):  # a service still closing a file keeps the mount busy a moment
            if subprocess.run(["umount", str(self.path)], check=False).returncode == 0:
                self.mounted = False
                return
            time.sleep(1)
        subprocess.run(["umount", "-l", str(self.path)], check=False)  # lazy: detached anyway
        self.mounted = False


class OwnRedis:
    """A redis-server on a free port, keeping nothing on disk, for the scale soak to restart."""

    def __init__(self) -> None:
        self.port = free_ports()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"), *NO_DISK],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: port_in_use("127.0.0.1", self.port), 10, "the soak's redis-server")

    def restart(self) -> None:
        """kill -9 and start again on the same port (what it held in memory is gone)."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process.pid, timeout=5)
            self.process.wait(timeout=10)
            self.process = None
