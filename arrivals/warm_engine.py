"""The warm engine: flow runs start as forks of a process that has already imported Prefect.

A process worker starts every flow run as a new `python -m prefect.engine`, which spends 1.5
to 2.5 s of this 2-core machine importing Prefect before it can report Running, and a retrain
then spends 6 s more importing pandas, scikit-learn, skops and MLflow (issue 4). This server
pays those imports once and then forks one child per flow run.

The worker still starts one process per run, `arrivals.engine_client`, which starts in
milliseconds: it sends its environment, working directory and stdio over a UNIX socket, the
server forks, and the child becomes exactly what `python -m prefect.engine` would have been
(same environment, cwd, stdio; Prefect's settings re-read). The client relays signals and
the exit code, so the worker's cancellation and crash detection work unchanged, and when this
server is down the client runs the cold engine itself: warm start is only ever faster.

The server is single-threaded (forking a process with threads is unsafe) and accepts only
connections from its own user (SO_PEERCRED) on a socket only that user can open.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from arrivals.topology import COLD_ENGINE, PRELOAD
from shared.logs import LOG_FORMAT

log = logging.getLogger("arrivals.warm_engine")

REQUEST_TIMEOUT_SECONDS = 5.0
SERVER_LOG_HANDLER = logging.StreamHandler()


@dataclass
class Job:
    """What a forked child runs: one flow run, as the client that asked for it."""

    env: dict[str, str]
    cwd: str
    argv: list[str]
    stdio: list[int]


def preload(modules: tuple[str, ...] = PRELOAD) -> None:
    """Import what every flow run needs, once, before any fork (see `arrivals.topology`)."""
    for module in modules:
        importlib.import_module(module)


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class ClientGone(ValueError):
    """The client closed before its request was complete (a health probe does that)."""


def _read_request(conn: socket.socket) -> Job:
    """The client's request: one JSON line, its stdio descriptors riding on the first bytes."""
    conn.settimeout(REQUEST_TIMEOUT_SECONDS)
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    buffer = bytearray(data)
    try:
        while b"\n" not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                raise ClientGone("the client closed the connection mid-request")
            buffer.extend(chunk)
        if len(fds) != 3:
            raise ValueError(f"expected 3 stdio descriptors, got {len(fds)}")
        request = json.loads(bytes(buffer).partition(b"\n")[0])
        return Job(
            env={str(k): str(v) for k, v in request["env"].items()},
            cwd=str(request["cwd"]),
            argv=[str(arg) for arg in request["argv"]],
            stdio=fds,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        for fd in fds:
            os.close(fd)
        raise


def _send(conn: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):  # the client is gone: nothing to tell
        conn.sendall(json.dumps(message).encode() + b"\n")


class WarmEngine:
    """Accept flow-run requests on `path` and fork a child per request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.selector = selectors.DefaultSelector()
        self.runs: dict[int, socket.socket] = {}  # child pid -> its client's connection
        self.stopping = False
        self.wakeup_read, self.wakeup_write = os.pipe()

    def serve(self) -> Job | None:
        """Serve until SIGTERM (returns None) or, in a forked child, return its Job."""
        self.path.unlink(missing_ok=True)
        old_umask = os.umask(0o177)  # the socket is ours alone: 0600
        try:
            self.listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        self.listener.listen(64)
        self.listener.setblocking(False)
        os.set_blocking(self.wakeup_write, False)
        signal.set_wakeup_fd(self.wakeup_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop through the fd
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_read, selectors.EVENT_READ, "wakeup")
        log.info("Warm engine ready on %s (pid %d)", self.path, os.getpid())
        while not self.stopping:
            for key, _events in self.selector.select():
                if key.data == "accept":
                    job = self._accept()
                    if job is not None:
                        return job  # we are the child now
                elif key.data == "wakeup":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wakeup_read, 512)
                else:
                    self._client_readable(key.fileobj, key.data)
            self._reap()
        self._close()
        return None

    def _stop(self, _signum: int, _frame: object) -> None:
        self.stopping = True

    def _accept(self) -> Job | None:
        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return None
        try:
            if _peer_uid(conn) != os.getuid():
                raise PermissionError("a connection from another user")
            job = _read_request(conn)
        except ClientGone:  # a health probe connects and closes: not worth a warning
            conn.close()
            return None
        except (OSError, ValueError) as error:
            log.warning("Refused a request: %s", error)
            conn.close()
            return None
        # Whatever sits in our buffers would otherwise be written again by the child.
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_child(conn)
            return job
        for fd in job.stdio:
            os.close(fd)
        conn.setblocking(False)
        self.runs[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ, pid)
        _send(conn, {"pid": pid})
        log.info(
            "Started flow run process %d for flow run %s",
            pid,
            job.env.get("PREFECT__FLOW_RUN_ID", "(none given)"),
        )
        return None

    def _become_child(self, conn: socket.socket) -> None:
        """Drop everything of the server's: sockets, the selector, the signal handlers."""
        signal.set_wakeup_fd(-1)
        # The handlers a fresh `python -m prefect.engine` starts with.
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        self.listener.close()  # the path stays: it belongs to the server
        os.close(self.wakeup_read)
        os.close(self.wakeup_write)
        for other in self.runs.values():
            other.close()
        conn.close()

    def _client_readable(self, conn: socket.socket, pid: int) -> None:
        """A client sends nothing after its request: readable means it died. Stop its run."""
        try:
            data = conn.recv(1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            log.warning("The client of run process %d went away; stopping the run", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            self.selector.unregister(conn)

    def _reap(self) -> None:
        while self.runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.runs.pop(pid, None)
            if conn is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            log.info("Flow run process %d exited with %d", pid, code)
            _send(conn, {"exit": code})
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(conn)
            conn.close()

    def _close(self) -> None:
        signal.set_wakeup_fd(-1)
        self.selector.close()
        self.listener.close()
        self.path.unlink(missing_ok=True)
        for conn in self.runs.values():
            conn.close()
        log.info("Warm engine stopped; %d run process(es) still running", len(self.runs))


def prefect_settings_env(env: dict[str, str]) -> dict[str, str]:
    """The variables Prefect reads its settings from (`PREFECT__*` are per-run, not settings)."""
    return {k: v for k, v in env.items() if k.startswith("PREFECT_") and k[7:8] != "_"}


def run_engine(job: Job, module: str = COLD_ENGINE) -> None:
    """In the forked child: become `python -m prefect.engine` for the client's flow run."""
    for target, fd in enumerate(job.stdio):
        os.dup2(fd, target)
        os.close(fd)
    same_settings = prefect_settings_env(job.env) == prefect_settings_env(dict(os.environ))
    os.environ.clear()
    os.environ.update(job.env)
    os.chdir(job.cwd)
    log.removeHandler(SERVER_LOG_HANDLER)
    if not same_settings:
        # Re-read settings and logging from the run's environment (0.3 s here): only when
        # the worker's job variables changed a Prefect setting.
        from prefect.context import refresh_global_settings_context
        from prefect.logging.configuration import setup_logging

        refresh_global_settings_context()
        setup_logging(incremental=False)
    sys.argv = [module, *job.argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m arrivals.warm_engine", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("socket", type=Path, help="the UNIX socket to listen on")
    parser.add_argument(
        "--run-module", default=COLD_ENGINE, help=f"what a child runs (default {COLD_ENGINE})"
    )
    parser.add_argument(
        "--no-preload", action="store_true", help="import nothing ahead (tests of the protocol)"
    )
    args = parser.parse_args(argv)
    if not args.no_preload:
        # Prefect configures logging on import, as in a cold engine; the server's own lines
        # go through a handler of their own, which each child removes.
        preload()
    SERVER_LOG_HANDLER.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    log.addHandler(SERVER_LOG_HANDLER)
    log.setLevel(logging.INFO)
    log.propagate = False
    job = WarmEngine(args.socket).serve()
    if job is not None:
        run_engine(job, args.run_module)  # a child: exits as the engine does, atexit included


if __name__ == "__main__":
    main()
