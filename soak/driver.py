"""The soak's arrivals: files of every kind dropped into the inbox at seeded random moments.

Kinds: good files (new rows resampled from the source), malformed ones (a broken header,
rows that are all bad, binary junk), duplicates (earlier content under a new name), slow
writes (written in pieces over a few seconds under the final name, as a slow `cp` does) and
bursts (dozens at once every few minutes). Every file but a slow one is written under a
hidden temp name and renamed in, so a drop either happens whole or not at all: on a full
disk the write fails, the temp file is removed, and the drop counts as refused, not sent.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.synthetic import new_content
from soak.invariants import Delivered

log = logging.getLogger("soak.driver")

# Shares of the single drops (bursts come on their own clock).
KINDS = {"good": 0.6, "malformed": 0.15, "duplicate": 0.15, "slow": 0.1}
EXPECT = {
    "good": "trained",
    "slow": "trained",
    "burst": "trained",
    "malformed": "rejected",
    "duplicate": "duplicate",
}
SLOW_PIECES = 6  # a slow write lands in this many pieces...
SLOW_PAUSE = 0.5  # ...this far apart: 3 s, well past the sensor's settle interval


@dataclass(frozen=True)
class Plan:
    """The driver's pace: seconds between single drops (mean), bursts and their size."""

    mean_gap: float = 2.0
    burst_every: tuple[float, float] = (120.0, 180.0)
    burst_size: tuple[int, int] = (20, 40)
    rows: tuple[int, int] = (8, 30)


@dataclass
class DriverLog:
    delivered: list[Delivered] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)  # name -> when it was in the inbox
    refused: list[str] = field(default_factory=list)  # drops a full disk refused (not sent)
    by_kind: dict[str, int] = field(default_factory=dict)


def malformed_content(pool: pd.DataFrame, rng: np.random.Generator, number: int) -> bytes:
    """A file no retrain can use, of one of three sorts, made unique by `number`."""
    sort = number % 3
    if sort == 0:  # a header that lacks a declared column
        frame = pool.sample(n=5, random_state=int(rng.integers(1 << 31))).drop(columns=["day"])
        return frame.assign(note=f"m{number}").to_csv(index=False).encode()
    if sort == 1:  # every row bad: an unknown category
        frame = pool.sample(n=5, random_state=int(rng.integers(1 << 31))).assign(day="Mon")
        return frame.assign(note=f"m{number}").to_csv(index=False).encode()
    return bytes(rng.integers(0, 256, size=300, dtype=np.uint8)) + f"{number}".encode()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Driver:
    """Drops files until stopped; `log` holds what was sent and what a full disk refused."""

    def __init__(self, inbox: Path, pool: pd.DataFrame, seed: int, plan: Plan = Plan()) -> None:
        self.inbox = inbox
        self.pool = pool
        self.rng = np.random.default_rng(seed)
        self.plan = plan
        self.floats = float_columns_of_pool(pool)
        self.seen: set[str] = set()
        self.good: list[bytes] = []  # delivered new contents: what a duplicate may repeat
        self.log = DriverLog()
        self.number = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- one drop ----------------------------------------------------------------------------
    def _name(self, kind: str) -> str:
        self.number += 1
        return f"soak-{self.number:05d}-{kind}.csv"

    def _record(self, name: str, data: bytes, kind: str) -> None:
        with self._lock:
            self.log.delivered.append(Delivered(name, sha256_of(data), kind, EXPECT[kind]))
            if kind in ("good", "slow", "burst"):
                self.good.append(data)  # delivered whole: a later duplicate may repeat it
            self.log.sent_at[name] = time.time()
            self.log.by_kind[kind] = self.log.by_kind.get(kind, 0) + 1

    def _refused(self, name: str, error: OSError) -> None:
        log.info("Drop of %s refused: %s", name, error.strerror)
        with self._lock:
            self.log.refused.append(name)

    def put(self, name: str, data: bytes, kind: str) -> None:
        """Write under a hidden temp name, then rename in: the whole file or nothing."""
        temp = self.inbox / f".{name}.part"
        try:
            temp.write_bytes(data)
            os.rename(temp, self.inbox / name)
        except OSError as error:
            temp.unlink(missing_ok=True)
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._refused(name, error)
            return
        self._record(name, data, kind)

    def put_slowly(self, name: str, data: bytes) -> None:
        """Write under the final name in pieces: the sensor must wait for the last one."""
        target = self.inbox / name
        step = -(-len(data) // SLOW_PIECES)
        try:
            with target.open("wb") as handle:
                for start in range(0, len(data), step):
                    handle.write(data[start : start + step])
                    handle.flush()
                    os.fsync(handle.fileno())
                    time.sleep(SLOW_PAUSE)
        except OSError as error:
            target.unlink(missing_ok=True)  # a half file is never left to be taken as whole
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._refused(name, error)
            return
        self._record(name, data, "slow")

    def _good_content(self) -> bytes:
        rows = int(self.rng.integers(*self.plan.rows))
        data, _sha = new_content(self.pool, rows, self.rng, self.floats, self.seen)
        return data

    def drop_one(self) -> None:
        """One drop of a kind drawn by the shares in KINDS."""
        kind = str(self.rng.choice(list(KINDS), p=list(KINDS.values())))
        if kind == "duplicate" and not self.good:
            kind = "good"
        name = self._name(kind)
        if kind == "good":
            self.put(name, self._good_content(), kind)
        elif kind == "malformed":
            self.put(name, malformed_content(self.pool, self.rng, self.number), kind)
        elif kind == "duplicate":
            self.put(name, self.good[int(self.rng.integers(len(self.good)))], kind)
        else:
            # In a thread: the driver's clock goes on while the file trickles in.
            data = self._good_content()
            threading.Thread(target=self.put_slowly, args=(name, data), daemon=True).start()

    def stage(self, folder: Path, count: int) -> list[tuple[Path, bytes]]:
        """Write `count` good files in `folder` (on the data filesystem, outside the inbox)."""
        folder.mkdir(parents=True, exist_ok=True)
        staged = []
        for _ in range(count):
            data = self._good_content()
            path = folder / self._name("good")
            path.write_bytes(data)
            staged.append((path, data))
        return staged

    def land(self, staged: list[tuple[Path, bytes]]) -> None:
        """Rename staged files into the inbox: a rename needs no space, even on a full disk."""
        for path, data in staged:
            os.rename(path, self.inbox / path.name)
            self._record(path.name, data, "good")

    def burst(self) -> None:
        size = int(self.rng.integers(*self.plan.burst_size))
        log.info("Burst of %d files", size)
        for _ in range(size):
            self.put(self._name("burst"), self._good_content(), "burst")

    # -- the clock -----------------------------------------------------------------------------
    def run(self, until: float) -> None:
        """Drop files until `until` (time.monotonic()) or `stop()`."""
        next_burst = time.monotonic() + float(self.rng.uniform(*self.plan.burst_every)) / 2
        while not self._stop.is_set() and time.monotonic() < until:
            if time.monotonic() >= next_burst:
                self.burst()
                next_burst = time.monotonic() + float(self.rng.uniform(*self.plan.burst_every))
            self.drop_one()
            self._stop.wait(float(self.rng.exponential(self.plan.mean_gap)))

    def stop(self) -> None:
        self._stop.set()


def float_columns_of_pool(pool: pd.DataFrame) -> list[str]:
    """The pool's float columns (the synthetic rows jitter them)."""
    return [name for name in pool.columns if pd.api.types.is_float_dtype(pool[name])]
