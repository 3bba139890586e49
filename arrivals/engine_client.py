"""The flow-run command of a warm-started deployment: `python -m arrivals.engine_client SOCKET`.

The process worker starts this in place of `python -m prefect.engine`. It hands its
environment, working directory and stdin/stdout/stderr to the warm engine
(`arrivals.warm_engine`), which forks an already-imported Prefect to run the flow; this process
stays the one the worker watches: it relays SIGTERM/SIGINT to the run and exits with the run's
exit code. When the warm engine cannot be reached it becomes the cold engine (`exec`), so a
stopped warm engine costs seconds, never a run.

Only the standard library is imported here: this process starts for every flow run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time

STDIO = [0, 1, 2]
# arrivals.topology.COLD_ENGINE, written out: importing the topology would cost every run the
# time this process exists to save (a unit test keeps the two equal).
COLD_ENGINE = "prefect.engine"
# The worker reads 0 as success; a run we lost sight of did not report success to it.
LOST_RUN_EXIT_CODE = 1


def _cold_engine(why: str) -> None:
    sys.stderr.write(f"arrivals: warm engine unavailable ({why}); starting a cold engine\n")
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", COLD_ENGINE, *sys.argv[2:]])


def _read_line(conn: socket.socket, buffer: bytearray) -> dict | None:
    """The next newline-terminated JSON message, or None when the engine closed the socket."""
    while b"\n" not in buffer:
        try:
            chunk = conn.recv(4096)
        except InterruptedError:
            continue
        if not chunk:
            return None
        buffer.extend(chunk)
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return json.loads(line)


def _wait_gone(pid: int) -> None:
    """Wait for a process that is not our child (the engine that forked it went away)."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)


def main() -> None:
    if len(sys.argv) < 2:
        sys.stderr.write("usage: python -m arrivals.engine_client SOCKET [FLOW_RUN_ID]\n")
        raise SystemExit(2)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(sys.argv[1])
    except OSError as error:
        conn.close()
        _cold_engine(f"{sys.argv[1]}: {error.strerror or error}")
    request = {"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv[2:]}
    payload = json.dumps(request).encode() + b"\n"
    # The descriptors travel with the first bytes; the rest of a long environment follows.
    sent = socket.send_fds(conn, [payload], STDIO)
    conn.sendall(payload[sent:])

    buffer = bytearray()
    started = _read_line(conn, buffer)
    if started is None or "pid" not in started:
        _cold_engine("it closed the connection before starting the run")
    child = int(started["pid"])

    def relay(signum: int, _frame: object) -> None:
        # The worker cancels a run by signalling the process it started: this one.
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, relay)

    finished = _read_line(conn, buffer)
    if finished is None:
        sys.stderr.write("arrivals: the warm engine went away; waiting for the run to end\n")
        _wait_gone(child)
        raise SystemExit(LOST_RUN_EXIT_CODE)
    code = int(finished["exit"])
    if code < 0:  # killed by a signal: die the same way so the worker sees the same thing
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
