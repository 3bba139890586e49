"""Processes by pid: their start times, the ports they hold, stopping their process groups.

A pid file records the start time beside the pid, so a reused pid is never taken for ours.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from pathlib import Path

log = logging.getLogger("arrivals.stack")
DEAD_STATES = ("Z", "X")  # /proc/<pid>/stat's state: zombie, dead


def process_start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot); None when it is gone or dead."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    # A killed process stays listed, as a zombie, until its parent reaps it; a container's
    # pid 1 may take seconds. It runs nothing and holds no port: it is not running.
    if fields[0] in DEAD_STATES:
        return None
    return fields[19]  # field 22 of stat: start time in clock ticks since boot


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def stop_group(pid: int, timeout: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        _reap(pid)
        time.sleep(0.1)
    log.warning("process group %d ignored SIGTERM for %.0f s; killing it", pid, timeout)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _reap(pid: int) -> None:
    """Collect our own child if it exited (tests start the stack in-process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
