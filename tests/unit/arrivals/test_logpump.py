"""The log pump: rotation at the size bound with N backups and no line lost or split, as a
pipe's reader, and as the launcher that becomes the service with the pump in its group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from arrivals.logpump import RotatingLog
from arrivals.processes import stop_group
from arrivals.stack import Stack

PUMP = [sys.executable, "-m", "arrivals.logpump"]


def numbered(count: int, width: int = 5) -> list[bytes]:
    return [f"line {i:0{width}d}\n".encode() for i in range(count)]


def files_oldest_first(path: Path) -> list[Path]:
    backups = sorted(path.parent.glob(f"{path.name}.*"), key=lambda p: -int(p.suffix[1:]))
    return [*backups, path]


def logged(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in files_oldest_first(path))


def write_in_odd_chunks(log: RotatingLog, data: bytes, size: int = 7) -> None:
    """Chunks that cut lines anywhere, as a pipe delivers them."""
    for start in range(0, len(data), size):
        log.write(data[start : start + size])


def test_rotates_at_the_bound_and_keeps_every_line_that_fits(tmp_path: Path) -> None:
    path = tmp_path / "worker.log"
    lines = numbered(40)  # 11 bytes each: 9 lines fit in 100 bytes
    log = RotatingLog(path, max_bytes=100, backups=5)
    write_in_odd_chunks(log, b"".join(lines))
    log.close()

    files = files_oldest_first(path)
    assert [p.name for p in files] == [f"worker.log.{i}" for i in (4, 3, 2, 1)] + ["worker.log"]
    assert [p.stat().st_size for p in files] == [99, 99, 99, 99, 44]  # 9, 9, 9, 9, 4 lines
    assert logged(path) == b"".join(lines)


def test_keeps_only_the_newest_backups(tmp_path: Path) -> None:
    path = tmp_path / "sensor.log"
    lines = numbered(100)
    log = RotatingLog(path, max_bytes=100, backups=2)
    write_in_odd_chunks(log, b"".join(lines), size=13)
    log.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sensor.log",
        "sensor.log.1",
        "sensor.log.2",
    ]
    kept = logged(path)
    # The newest lines, contiguous and whole: only whole older files were dropped.
    assert kept == b"".join(lines[-len(kept.splitlines()) :])
    assert len(kept.splitlines()) == 9 + 9 + 1  # 100 = 11 files of 9 lines, the last has 1


def test_a_line_is_never_split_and_a_long_one_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "mlflow.log"
    long_line = b"x" * 250 + b"\n"
    log = RotatingLog(path, max_bytes=100, backups=3)
    log.write(b"first\nsecond half-")
    log.write(b"written\n" + long_line + b"last\n")
    log.close()

    assert [p.read_bytes() for p in files_oldest_first(path)] == [
        b"first\nsecond half-written\n",
        long_line,
        b"last\n",
    ]


def test_an_existing_log_is_continued_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "prefect.log"
    path.write_bytes(b"from an earlier run\n" * 4)  # 80 bytes
    log = RotatingLog(path, max_bytes=100, backups=1)
    log.write(b"a new line, 24 bytes ..\n")
    log.close()
    assert path.read_bytes() == b"a new line, 24 bytes ..\n"
    assert (tmp_path / "prefect.log.1").read_bytes() == b"from an earlier run\n" * 4


def test_pumps_a_pipe_until_its_writer_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "engine.log"
    lines = numbered(2_000)
    pump = subprocess.Popen(
        [*PUMP, str(path), "4096", "20"],
        stdin=subprocess.PIPE,
    )
    assert pump.stdin is not None
    for start in range(0, len(lines), 37):
        pump.stdin.write(b"".join(lines[start : start + 37]))
        pump.stdin.flush()
    pump.stdin.close()
    assert pump.wait(timeout=30) == 0

    files = files_oldest_first(path)
    assert len(files) == 6 and all(p.stat().st_size <= 4096 for p in files)  # 22 000 bytes
    assert logged(path) == b"".join(lines)


SERVICE = textwrap.dedent(
    """
    import os, signal, sys, time

    def stop(*_):
        print("stopping after SIGTERM", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"pid {os.getpid()} group {os.getpgid(0)}", flush=True)
    for i in range(3000):
        print(f"out {i:05d}")
    sys.stdout.flush()
    print("to stderr", file=sys.stderr, flush=True)
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def group_members(pgid: int) -> dict[int, int]:
    """pid -> parent pid of every process in the process group."""
    members = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid:
            members[int(stat.parent.name)] = int(fields[1])
    return members


def wait_for_line(path: Path, line: bytes, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(line in p.read_bytes().splitlines() for p in files_oldest_first(path) if p.exists()):
            return
        time.sleep(0.05)
    pytest.fail(f"{line!r} never reached {path}")


def test_the_launcher_becomes_the_service_with_the_pump_in_its_group(tmp_path: Path) -> None:
    path = tmp_path / "sensor.log"
    service = subprocess.Popen(
        [*PUMP, str(path), "8192", "5", "--", sys.executable, "-c", SERVICE],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_line(path, b"ready")
        # The service kept the pid its supervisor recorded, and leads its own group ...
        assert f"pid {service.pid} group {service.pid}".encode() in logged(path)
        # ... where the pump is the one other member, and not the service's child.
        members = group_members(service.pid)
        assert len(members) == 2 and members[service.pid] == os.getpid()
        (pump,) = set(members) - {service.pid}
        assert members[pump] != service.pid

        started = time.monotonic()
        stop_group(service.pid, timeout=10)  # what `arrivals down` does
        assert time.monotonic() - started < 5, "the group ended on SIGTERM, no SIGKILL needed"
        assert group_members(service.pid) == {}
    finally:
        if service.poll() is None:
            service.kill()
        service.wait(timeout=10)

    files = files_oldest_first(path)
    assert len(files) == 4 and all(p.stat().st_size <= 8192 for p in files)  # 30 KB rotated
    lines = logged(path).splitlines()
    assert [line for line in lines if line.startswith(b"out ")] == [
        f"out {i:05d}".encode() for i in range(3000)
    ]
    # stderr joins stdout, and the line written while stopping was pumped before the end.
    assert lines[-3:] == [b"to stderr", b"ready", b"stopping after SIGTERM"]


def test_stack_spawns_services_through_the_pump(settings, tmp_path: Path) -> None:
    """The supervisor's pid file and log are where they always were; `down` ends both."""
    settings.dirs.ensure()
    stack = Stack(settings)
    pid = stack._spawn("sensor", [sys.executable, "-c", SERVICE])
    log_path = settings.dirs.logs / "sensor.log"
    try:
        wait_for_line(log_path, b"ready")
        assert stack.pid("sensor") == pid
        assert f"pid {pid} group {pid}".encode() in log_path.read_bytes()
        assert len(group_members(pid)) == 2
        assert stack.down(timeout=10) == ["sensor"]
        assert group_members(pid) == {}
        assert log_path.read_bytes().endswith(b"stopping after SIGTERM\n")
    finally:
        stop_group(pid, timeout=5)
