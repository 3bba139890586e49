"""The soak's faults: kill -9 a random part of the stack, let `arrivals up --detach` heal it,
and time the recovery.

A service is killed as a whole process group (a crashed host or container takes a server's
workers with it; killing only a parent would leave them holding its port). A running
retrain is killed alone: the forked flow-run process under the warm engine, mid-work.
Redis (scale profile) is the soak's own server, restarted by the soak, as an operator's
supervisor would.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from arrivals.harness import RunningStack
from arrivals.processes import process_start_time
from arrivals.stack import Stack, StackError

log = logging.getLogger("soak.chaos")

EMBEDDED_PARTS = ("prefect", "mlflow", "engine", "worker", "retrain", "sensor", "serve")
SCALE_PARTS = (*EMBEDDED_PARTS, "replica", "services", "redis")
SERVICE_OF_PART = {"replica": "prefect-2", "services": "prefect-services"}
HEAL_ATTEMPTS = 3
RETRAIN_WAIT_SECONDS = 20.0  # how long to wait for a retrain to be running to kill it


@dataclass(frozen=True)
class Fault:
    part: str
    at: float  # time.time() of the kill
    pid: int | None  # None: nothing of that part was running to kill
    recovery_seconds: float | None  # None: did not recover (a finding)
    note: str = ""


@dataclass
class ChaosLog:
    faults: list[Fault] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # heals that did not work


def children_of(pid: int) -> list[int]:
    """The pids whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError, PermissionError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def kill_group(pid: int) -> None:
    """SIGKILL the process group `pid` leads (a service started in its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class Chaos:
    """Every 20-45 s a random part dies; sometimes (`double`) a second one 1-10 s after."""

    def __init__(
        self,
        stack: RunningStack,
        seed: int,
        parts: tuple[str, ...],
        *,
        gap: tuple[float, float] = (20.0, 45.0),
        double: float = 0.4,
        restart_redis: Callable[[], None] | None = None,
        claimed: Callable[[], set[str]] | None = None,
    ) -> None:
        self.stack = stack
        self.pids = Stack(stack.settings)  # reads pid files (start time checked), starts nothing
        self.rng = np.random.default_rng(seed)
        self.parts = parts
        self.gap = gap
        self.double = double
        self.restart_redis = restart_redis
        self.claimed = claimed or (lambda: set())
        self.log = ChaosLog()
        self._stop = threading.Event()
        self.lock = threading.Lock()  # held while a fault and its heal run (the disk waits)

    # -- killing -------------------------------------------------------------------------------
    def _service_pid(self, name: str) -> int | None:
        """The service's pid from its pid file, if that very process still runs."""
        return self.pids.pid(name)

    def _retrain_pid(self) -> int | None:
        """A flow-run process forked by the warm engine, waiting a while for one to run."""
        deadline = time.monotonic() + RETRAIN_WAIT_SECONDS
        while time.monotonic() < deadline and not self._stop.is_set():
            engine = self._service_pid("engine")
            forks = children_of(engine) if engine else []
            if forks:
                return forks[0]
            time.sleep(0.2)
        return None

    def _kill(self, part: str) -> int | None:
        if part == "retrain":
            pid = self._retrain_pid()
            if pid is not None and process_start_time(pid):
                os.kill(pid, signal.SIGKILL)
            return pid
        if part == "redis":
            assert self.restart_redis is not None
            self.restart_redis()
            return None
        pid = self._service_pid(SERVICE_OF_PART.get(part, part))
        if pid is not None:
            kill_group(pid)
        return pid

    # -- healing ---------------------------------------------------------------------------------
    def _heal(self) -> bool:
        """`arrivals up --detach` until every service is healthy (a few tries)."""
        for attempt in range(1, HEAL_ATTEMPTS + 1):
            try:
                self.stack.up()
                return True
            except (StackError, subprocess.SubprocessError) as error:  # try again shortly
                log.warning("Heal attempt %d failed: %s", attempt, error)
                time.sleep(2)
        return False

    def _wait_claims_released(self, held: set[str], timeout: float) -> bool:
        """The files a killed run held are finished or claimed by another run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not (held & self.claimed()):
                return True
            time.sleep(0.5)
        return False

    def fault(self, part: str) -> Fault:
        """Kill `part`, heal, and time it."""
        with self.lock:
            held = self.claimed() if part == "retrain" else set()
            at, started = time.time(), time.monotonic()
            pid = self._kill(part)
            if part == "retrain":
                if pid is None:
                    return Fault(part, at, None, None, "no retrain was running")
                ok = self._wait_claims_released(held, timeout=300)
            else:
                ok = self._heal()
            recovery = time.monotonic() - started if ok else None
            if not ok:
                self.log.failures.append(f"{part} did not recover")
            fault = Fault(part, at, pid, recovery)
            self.log.faults.append(fault)
            log.info("Fault: %s (pid %s) recovered in %s s", part, pid, recovery)
            return fault

    # -- the clock -------------------------------------------------------------------------------
    def run(self, until: float) -> None:
        """A fault every `gap` seconds, counted from the last one's kill (its heal included)."""
        next_at = time.monotonic() + float(self.rng.uniform(*self.gap))
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            if time.monotonic() >= until:
                return
            started = time.monotonic()
            first = self._strike()
            if self.rng.random() < self.double and time.monotonic() < until:
                self._stop.wait(float(self.rng.uniform(1.0, 10.0)))
                self._strike(exclude=first)
            next_at = started + float(self.rng.uniform(*self.gap))

    def _strike(self, exclude: str | None = None) -> str:
        """Kill a random part other than `exclude`. With no retrain running to kill, another
        part dies instead, so the fault rate does not depend on how busy the retrains are."""
        choices = [p for p in self.parts if p != exclude]
        part = str(self.rng.choice(choices))
        if self.fault(part).pid is None and part == "retrain":
            part = str(self.rng.choice([p for p in choices if p != "retrain"]))
            self.fault(part)
        return part

    def stop(self) -> None:
        self._stop.set()
