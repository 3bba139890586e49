"""Processes by pid: a killed process that is not reaped yet is not running."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from arrivals.harness import wait_for
from arrivals.processes import process_start_time


def test_a_live_process_has_a_start_time_and_a_killed_unreaped_one_has_none() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        started = process_start_time(child.pid)
        assert started is not None and started.isdigit()
        child.send_signal(signal.SIGKILL)
        # Not reaped (no wait() yet): a zombie, still listed in /proc under the same pid.
        wait_for(
            lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z",
            5,
            "the child to be a zombie",
            every=0.01,
        )
        assert process_start_time(child.pid) is None
    finally:
        child.wait()
    # Reaped: gone from /proc altogether.
    assert process_start_time(child.pid) is None
