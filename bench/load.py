"""Closed-loop HTTP load for the `serve` part: calls, their summaries, and the loops.

Each client thread (an httpx keep-alive client) posts the next body as soon as the last one was
answered; every call is kept with its send and answer times, status and answering version.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import httpx
import pandas as pd

from arrivals.harness import wait_for
from bench.stats import percentile
from bench.tables import fmt

log = logging.getLogger("bench.serve")

LOAD_THREADS = 4  # the throughput loops
WARMUP_SECONDS = 2.0
ERROR_PAUSE = 0.05  # a client whose request failed waits this long before the next
JSON = {"content-type": "application/json"}  # mlflow models serve answers 500 without it


@dataclass(frozen=True)
class Call:
    sent: float  # time.perf_counter() when the request left
    done: float  # when its answer (or its error) came
    status: int  # the HTTP status; 0: no answer (refused, reset, timed out)
    version: str | None  # X-Model-Version (mlflow models serve sends none)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def load_summary(calls: Sequence[Call], start: float, end: float, rows: int) -> dict[str, Any]:
    """Requests sent and answered within [start, end]: rates of the answered ones, latency."""
    inside = [c for c in calls if c.sent >= start and c.done <= end]
    ok = [c.done - c.sent for c in inside if c.status == 200]
    seconds = end - start
    return {
        "rows_per_request": rows,
        "seconds": seconds,
        "requests": len(inside),
        "failed": len(inside) - len(ok),
        "requests_per_second": len(ok) / seconds,
        "rows_per_second": len(ok) * rows / seconds,
        "p50_ms": ms(percentile(ok, 50)),
        "p99_ms": ms(percentile(ok, 99)),
    }


def first_answer_after(
    calls: Sequence[Call], since: float, version: str | None = None, start: int = 0
) -> float | None:
    """When the first 200 answer (from `version`, if given) came at or after `since`; None if
    none did. `start`: skip the calls before this index (they were recorded earlier)."""
    return min(
        (
            c.done
            for c in islice(calls, start, None)
            if c.status == 200 and c.done >= since and version in (None, c.version)
        ),
        default=None,
    )


def failed_between(calls: Sequence[Call], start: float, end: float) -> int:
    """Requests that got no 200 answer, among those that ended within [start, end]."""
    return sum(1 for c in calls if c.status != 200 and start <= c.done <= end)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


def identify(predictions: list, fingerprints: dict[str, list]) -> str | None:
    """The one version whose predictions on the probe rows are these; None if not exactly one."""
    matches = [v for v, known in fingerprints.items() if known == predictions]
    return matches[0] if len(matches) == 1 else None


def split_body(frame: pd.DataFrame) -> bytes:
    split = json.loads(frame.to_json(orient="split", index=False))
    return json.dumps({"dataframe_split": split}).encode()


class Load:
    """Closed loops: each thread posts the next body as soon as the last one was answered."""

    def __init__(self, url: str, bodies: Sequence[bytes], threads: int) -> None:
        self.url, self.bodies, self.started = f"{url}/invocations", bodies, 0.0
        self.calls: list[Call] = []  # appended by every thread (list.append is atomic)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(threads)
        ]

    def _loop(self, offset: int) -> None:
        with httpx.Client(timeout=10.0) as client:
            for turn in range(offset * 7, 1 << 62):
                if self._stop.is_set():
                    return
                sent = time.perf_counter()
                try:
                    response = client.post(
                        self.url, content=self.bodies[turn % len(self.bodies)], headers=JSON
                    )
                    status, version = response.status_code, response.headers.get("x-model-version")
                except httpx.HTTPError:
                    status, version = 0, None
                self.calls.append(Call(sent, time.perf_counter(), status, version))
                if status != 200:
                    time.sleep(ERROR_PAUSE)

    def wait_answer(self, since: float, version: str | None, timeout: float, what: str) -> float:
        """When the first 200 (from `version`) came after `since`, waiting for it if need be."""
        seen = len(self.calls)
        return first_answer_after(self.calls[:seen], since, version) or wait_for(
            lambda: first_answer_after(self.calls, since, version, seen), timeout, what, every=0.01
        )

    def __enter__(self) -> Load:
        self.started = time.perf_counter()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def measure_throughput(name: str, url: str, bodies: list[bytes], rows: int, seconds: float) -> dict:
    with Load(url, bodies, LOAD_THREADS) as load:
        time.sleep(WARMUP_SECONDS + seconds)
    start = load.started + WARMUP_SECONDS
    r = load_summary(load.calls, start, start + seconds, rows)
    rate = f"{r['requests_per_second']:.0f} req/s, p50 {fmt(r['p50_ms'], 2)} ms"
    log.info("  %s, %d row(s)/request: %s, p99 %s ms", name, rows, rate, fmt(r["p99_ms"], 2))
    return r
