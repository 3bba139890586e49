"""A service's log, rotated by size: raw lines from a pipe into `<name>.log`, `.log.1`, ...

    python -m arrivals.logpump PATH MAX_BYTES BACKUPS              # pump stdin into PATH
    python -m arrivals.logpump PATH MAX_BYTES BACKUPS -- ARGV...   # run ARGV, pumping its output

With `-- ARGV`, this process becomes ARGV (exec: same pid, same process group, so the
supervisor's pid file and `down` see the service itself) after forking the pump into the
same group, as a grandchild: tools that list or kill the service's children never meet it.
The pump ignores the stop signals and exits when the last writer closes the pipe, so a
service's last lines are written before `down` sees its group gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

CHUNK = 64 * 1024


def _lines(data: bytes) -> Iterator[bytes]:
    """`data` cut after each newline (the last piece may be a line's beginning)."""
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end


class RotatingLog:
    """Appends raw lines to `path`; before a line would take it past `max_bytes`, `path`
    becomes `path.1` (`.1` becomes `.2`, ..., the oldest beyond `backups` is dropped).

    A line is never split across files: an unfinished line waits for its end (or for
    `close`), and one longer than the bound gets a file to itself.
    """

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        if max_bytes < 1 or backups < 1:
            raise ValueError("max_bytes and backups must be at least 1")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self._at_line_start = True
        self._unfinished = b""

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def write(self, data: bytes) -> None:
        data = self._unfinished + data
        end = data.rfind(b"\n") + 1
        if len(data) - end > self.max_bytes:  # a line longer than a file: out with it now
            end = len(data)
        self._unfinished = data[end:]
        self._append(data[:end])

    def _append(self, data: bytes) -> None:
        pending: list[bytes] = []
        for piece in _lines(data):
            if self._at_line_start and self._size and self._size + len(piece) > self.max_bytes:
                self._flush(pending)
                pending = []
                self._rotate()
            pending.append(piece)
            self._size += len(piece)
            self._at_line_start = piece.endswith(b"\n")
        self._flush(pending)

    def _flush(self, pieces: list[bytes]) -> None:
        view = memoryview(b"".join(pieces))
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            # A full disk: these lines are lost, but the service never blocks on its log.
            pass

    def _rotate(self) -> None:
        os.close(self._fd)
        for index in range(self.backups - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}.{index}", f"{self.path}.{index + 1}")
        with contextlib.suppress(FileNotFoundError):  # someone removed it meanwhile
            os.replace(self.path, f"{self.path}.1")
        self._fd = self._open()
        self._size = 0

    def close(self) -> None:
        """Write an unfinished last line as it is, and close the file."""
        self._append(self._unfinished)
        self._unfinished = b""
        os.close(self._fd)


def pump(fd: int, log: RotatingLog) -> None:
    """Copy everything read from `fd` into `log` until every writer has closed it."""
    while chunk := os.read(fd, CHUNK):
        log.write(chunk)
    log.close()


def _pump_forever(read_end: int, log: RotatingLog) -> None:
    # `down` signals the whole group: the service stops, and the pump writes until the pipe
    # is drained (a SIGKILL after down's timeout still ends it).
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    pump(read_end, log)


def run_pumped(log: RotatingLog, argv: list[str]) -> None:
    """Become `argv` with stdout and stderr piped into a pump of `log` (never returns)."""
    read_end, write_end = os.pipe()
    middle = os.fork()
    if middle == 0:
        _fork_pump(read_end, write_end, log)
    _pid, status = os.waitpid(middle, 0)
    log.close()
    os.close(read_end)
    if status == 0:
        os.dup2(write_end, 1)
        os.dup2(write_end, 2)
    else:  # no pump: the service writes straight into the file, unrotated, but it runs
        sys.stderr.write("logpump: could not start the pump; this log will not rotate\n")
        sys.stderr.flush()
    os.close(write_end)
    try:
        os.execvp(argv[0], argv)
    except OSError as error:
        sys.stderr.write(f"logpump: cannot run {argv[0]}: {error}\n")
        sys.stderr.flush()
        os._exit(127)


def _fork_pump(read_end: int, write_end: int, log: RotatingLog) -> None:
    """In the short-lived middle child: fork the pump and exit (0: the pump is running)."""
    try:
        pumping = os.fork() == 0
    except OSError:
        os._exit(1)
    if not pumping:
        os._exit(0)
    os.close(write_end)  # else the pipe would never report its end
    try:
        _pump_forever(read_end, log)
    except OSError as error:  # the log file cannot be opened again after a rotation
        sys.stderr.write(f"logpump: {log.path}: {error}\n")
        os._exit(1)
    os._exit(0)


def main(args: list[str]) -> int:
    if len(args) < 3 or (len(args) > 3 and (args[3] != "--" or len(args) == 4)):
        sys.stderr.write(__doc__ or "")
        return 2
    path, max_bytes, backups = Path(args[0]), int(args[1]), int(args[2])
    log = RotatingLog(path, max_bytes, backups)
    if len(args) > 3:
        run_pumped(log, args[4:])
    pump(sys.stdin.fileno(), log)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
