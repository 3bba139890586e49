"""Part `serve`: `arrivals serve` under load and through promotions, beside `mlflow models serve`.

One fresh stack; the producer's batches 1 and 2 make two registered versions. Both servers get
the same closed loops: client threads (an httpx keep-alive client each) posting tips rows as
JSON `dataframe_split`, each the next as soon as the last answered, timed after a warm-up. A
promotion here is what the retrain's commit and publish do: the `champion` alias moved in MLflow,
then the same `model.champion.promoted` event posted to Prefect (training is timed by the other
parts). `mlflow models serve` resolves the alias once, at start: a promotion costs it a restart.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from arrivals.harness import BIN, QUIET, RunningStack, WaitTimedOut, free_ports, wait_for
from arrivals.processes import stop_group
from bench.homes import BenchError
from bench.load import (
    ERROR_PAUSE,
    JSON,
    LOAD_THREADS,
    WARMUP_SECONDS,
    Load,
    failed_between,
    identify,
    measure_throughput,
    ms,
    ratio,
    split_body,
)
from bench.stacks import PART_ERRORS, wait_idle
from bench.stats import summarize
from bench.tables import fmt, render_table
from consumer.registry import MlflowRegistry
from producer.batches import batch_file_name
from shared import events
from shared.settings import Settings

log = logging.getLogger("bench.serve")

ROWS_PER_REQUEST = (1, 100)
STEADY_THREADS = 2  # the load kept on during promotions and restarts (1-row requests)
SPACING_SECONDS = 2.5  # between promotions (event posted to event posted)
FOLLOW_TIMEOUT = 30.0
SERVERS = ("arrivals serve", "mlflow models serve")
# The alias check far apart: every swap measured here comes from the promotion event.
SERVE_OVERRIDES = {"serve": {"poll_seconds": 600}}
SERVE_TARGETS = {"failed requests during promotions": 0, "promotions not followed": 0}


@dataclass
class Setup:
    """What both servers are measured with: the stack's settings, the two versions, the rows."""

    settings: Settings
    folder: Path
    pair: tuple[str, str] = ("", "")  # (the champion at start, the other version)
    bodies: dict[int, list[bytes]] = field(default_factory=dict)  # rows per request -> bodies
    probe_body: bytes = b""  # every source row: its predictions tell the versions apart
    fingerprints: dict[str, list] = field(default_factory=dict)  # version -> its predictions

    def __post_init__(self) -> None:
        s = self.settings
        self.model = s.model.name
        self.registry = MlflowRegistry(s.mlflow_url, self.model, s.dataset.name)
        self.emitter = events.ConfirmedEmitter(s.prefect_api_url)
        frame = pd.read_csv(s.dataset.source)[list(s.dataset.features.all)]
        self.probe_rows, self.probe_body = len(frame), split_body(frame)
        for n in ROWS_PER_REQUEST:  # cut in requests of n rows (an incomplete last one dropped)
            starts = range(0, len(frame) - n + 1, n)
            self.bodies[n] = [split_body(frame.iloc[i : i + n]) for i in starts]

    def promotion(self, number: int) -> tuple[str, str]:
        """(new, old) of the promotion `number` (0, 1, ...): back and forth between the two."""
        return self.pair[(number + 1) % 2], self.pair[number % 2]

    def announce(self, new: str, old: str | None, number: int) -> None:
        """The event of consumer/publish.py:announce_model, with an id of its own."""
        promotion = self.settings.promotion
        payload = {"old_version": old, "new_version": new, "metric": promotion.metric}
        payload |= {"delta": None, "delta_ci_low": None, "delta_ci_high": None}
        payload |= {"confidence": promotion.confidence, "reason": "bench: alias moved"}
        resource = {
            "prefect.resource.id": events.model_resource_id(self.model, new),
            "prefect.resource.name": f"{self.model} v{new}",
        }
        event_id = events.event_id(events.CHAMPION_PROMOTED, self.model, new, "bench", number)
        self.emitter.emit([events.Event(events.CHAMPION_PROMOTED, resource, payload, event_id)])

    def probe(self, url: str) -> tuple[str | None, list]:
        """Every probe row in one request: (the version header, the predictions)."""
        response = httpx.post(f"{url}/invocations", content=self.probe_body, headers=JSON)
        response.raise_for_status()
        return response.headers.get("x-model-version"), response.json()["predictions"]


def two_versions(stack: RunningStack, setup: Setup) -> tuple[str, str]:
    """Batches 1 and 2 dropped and decided: (the champion, the other version)."""
    for batch in (1, 2):
        stack.arrivals("drop", "--batch", str(batch))
        stack.wait_terminal(batch_file_name(stack.settings.dataset.name, batch), 180)
    wait_idle(stack)
    decided = [v["version"] for v in stack.model_versions() if "arrivals.decision" in v["tags"]]
    if len(decided) < 2:
        raise BenchError(f"batches 1 and 2 made versions {decided}; 2 are needed")
    current = setup.registry.champion()
    champion = current.version if current else min(decided, key=int)
    if current is None:  # no version won: the bench promotes the first one itself
        setup.registry.move_champion(champion, None)
        setup.announce(champion, None, -1)
    return champion, max((v for v in decided if v != champion), key=int)


def served_version(url: str) -> str | None:
    try:
        return httpx.get(f"{url}/version", timeout=5).json()["version"]
    except (httpx.HTTPError, ValueError):
        return None


def measure_promotions(setup: Setup, url: str, count: int) -> dict[str, Any]:
    """`count` promotions back and forth under the steady load (and each version's predictions)."""
    each = []
    with Load(url, setup.bodies[1], STEADY_THREADS) as load:
        time.sleep(1.0)
        began = time.perf_counter()
        for number in range(count):
            new, old = setup.promotion(number)
            moved = time.perf_counter()
            setup.registry.move_champion(new, old)
            posted = time.perf_counter()
            setup.announce(new, old, number)
            accepted, first = time.perf_counter(), None
            try:
                first = load.wait_answer(posted, new, FOLLOW_TIMEOUT, f"an answer from v{new}")
            except WaitTimedOut as error:
                log.error("Promotion %d to v%s: %s", number + 1, new, error)
            if new not in setup.fingerprints:
                setup.fingerprints.update([setup.probe(url)])
            follow = ms(first - posted) if first is not None else None
            each.append({"version": new, "alias_move_ms": ms(posted - moved)})
            each[-1] |= {"event_post_ms": ms(accepted - posted), "follow_ms": follow}
            time.sleep(max(0.0, posted + SPACING_SECONDS - time.perf_counter()))
        ended = time.perf_counter()
    follows = [e["follow_ms"] for e in each]
    result = {"count": count, "spacing_seconds": SPACING_SECONDS, "steady_threads": STEADY_THREADS}
    result |= {"follow_ms": summarize(follows), "not_followed": follows.count(None)}
    result |= {
        "requests": sum(1 for c in load.calls if began <= c.done <= ended),
        "failed": failed_between(load.calls, began, ended),
        "each": each,
    }
    log.info(
        "  %d promotions: followed in p50 %s ms, max %s ms; %d of %d requests failed",
        *(count, fmt(result["follow_ms"]["p50"], 0), fmt(result["follow_ms"]["max"], 0)),
        *(result["failed"], result["requests"]),
    )
    return result


class MlflowServer:
    """`mlflow models serve` of the champion alias, in a process group of its own."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.port, self.log_path = free_ports(), log_path
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [
            str(BIN / "mlflow"), "models", "serve",
            "-m", f"models:/{settings.model.name}@champion",
            "--env-manager", "local", "-h", "127.0.0.1", "-p", str(self.port), "--workers", "1",
        ]  # fmt: skip
        self.env = {**os.environ, **QUIET, "MLFLOW_TRACKING_URI": settings.mlflow_url}
        # It runs `uvicorn` by name: the venv's bin must be on PATH (it is not when the bench
        # runs as `.venv/bin/python -m bench`).
        self.env["PATH"] = os.pathsep.join([str(BIN), self.env.get("PATH", "")])
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        alone = {
            "stdin": subprocess.DEVNULL,
            "stderr": subprocess.STDOUT,
            "start_new_session": True,
        }
        with self.log_path.open("ab") as out:  # the child keeps its own copy
            self.process = subprocess.Popen(self.command, env=self.env, stdout=out, **alone)

    def ready(self, timeout: float = 180) -> None:
        def answers() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"mlflow models serve exited; see {self.log_path}")
            try:
                return httpx.get(f"{self.url}/ping", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, timeout, f"mlflow models serve on {self.url}", every=0.1)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process.pid, 20)
            self.process.wait(timeout=10)
            self.process = None


def measure_restarts(setup: Setup, server: MlflowServer, count: int) -> dict[str, Any]:
    """Under the steady load: move the alias, restart, until the first 200 answer; `count` times."""
    each = []
    with Load(server.url, setup.bodies[1], STEADY_THREADS) as load:
        time.sleep(1.0)
        for number in range(count):
            new, old = setup.promotion(number)
            setup.registry.move_champion(new, old)
            restart = time.perf_counter()
            server.stop()
            stopped = time.perf_counter()
            server.start()
            first = load.wait_answer(stopped, None, 180, "a 200 from the restarted mlflow server")
            serves = identify(setup.probe(server.url)[1], setup.fingerprints)
            failed = failed_between(load.calls, restart, first)
            each.append({"version": new, "serves": serves, "stop_seconds": stopped - restart})
            each[-1] |= {"restart_seconds": first - restart, "failed": failed}
            log.info(
                "  restart %d: first 200 after %.1f s, serves v%s (v%s expected), %d failed",
                *(number + 1, first - restart, serves, new, failed),
            )
            time.sleep(1.0)
    return {
        "count": count,
        "restart_seconds": summarize([e["restart_seconds"] for e in each]),
        "failed": sum(e["failed"] for e in each),
        "served_new_version": sum(e["serves"] == e["version"] for e in each),
        "each": each,
    }


def start_mlflow(setup: Setup, server: MlflowServer, result: dict[str, Any]) -> None:
    """Start it; check it answers what ours answers for the same version."""
    started = time.perf_counter()
    server.start()
    server.ready()
    result["mlflow_start_seconds"] = time.perf_counter() - started
    at_start = identify(setup.probe(server.url)[1], setup.fingerprints)
    result["same_predictions"] = at_start == setup.pair[0]
    log.info("mlflow models serve up in %.1f s", result["mlflow_start_seconds"])


def measure_serve(
    stack: RunningStack, folder: Path, *, seconds: float, promotions: int, restarts: int
) -> dict[str, Any]:
    """The whole part on one running stack, the two servers' loads in turn; `mlflow models
    serve` is always stopped. Its failure keeps what was measured of ours (with the error)."""
    from mlflow.exceptions import MlflowException  # seconds to import: only when the part runs

    setup, url = Setup(stack.settings, folder), stack.settings.serve_url
    server = MlflowServer(stack.settings, folder / "mlflow-serve.log")
    result: dict[str, Any] = {"threads": LOAD_THREADS, "seconds": seconds}
    result |= {"probe_rows": setup.probe_rows, "throughput": {name: {} for name in SERVERS}}
    ours, theirs = (result["throughput"][name] for name in SERVERS)
    errors = []

    def on_mlflow(step: Callable[[], Any]) -> None:
        """A step on `mlflow models serve`; after one failed, the next ones are skipped."""
        if errors:
            return
        try:
            step()
        except (*PART_ERRORS, MlflowException) as error:
            log.exception("mlflow models serve could not be measured")
            errors.append(f"mlflow models serve: {type(error).__name__}: {error}")

    try:
        setup.pair = two_versions(stack, setup)
        wait_for(lambda: served_version(url) == setup.pair[0], 60, f"v{setup.pair[0]} served")
        result["versions"] = list(setup.pair)
        setup.fingerprints.update([setup.probe(url)])
        on_mlflow(lambda: start_mlflow(setup, server, result))
        log.info("Throughput of v%s, the two servers in turn:", setup.pair[0])
        for rows, bodies in setup.bodies.items():
            ours[str(rows)] = measure_throughput(SERVERS[0], url, bodies, rows, seconds)

            def mlflow_rows(rows: int = rows, bodies: list[bytes] = bodies) -> None:
                theirs[str(rows)] = measure_throughput(
                    SERVERS[1], server.url, bodies, rows, seconds
                )

            on_mlflow(mlflow_rows)
        log.info("Promotions between v%s and v%s under steady load:", *setup.pair)
        result["promotions"] = p = measure_promotions(setup, url, promotions)
        on_mlflow(lambda: result.update(restarts=measure_restarts(setup, server, restarts)))
    except (events.EventNotDelivered, MlflowException) as error:
        raise BenchError(f"a promotion failed: {error}") from error
    finally:
        server.stop()
        setup.emitter.close()
    result["ratio"] = {
        size: ratio(t["requests_per_second"], theirs.get(size, {}).get("requests_per_second"))
        for size, t in ours.items()
    }
    if p["failed"] or p["not_followed"]:
        errors.insert(
            0,
            f"{p['failed']} requests failed and {p['not_followed']} promotions were not "
            f"followed during {promotions} promotions (both must be 0)",
        )
    if errors:
        result["error"] = "; ".join(errors)
    return result


def render_serve(part: dict[str, Any]) -> str:
    """Throughput and latency of both servers; what a promotion costs each."""
    rows = [
        [server, size, fmt(t["requests"]), fmt(t["requests_per_second"], 0),
         fmt(t["rows_per_second"], 0), fmt(t["p50_ms"], 2), fmt(t["p99_ms"], 2), fmt(t["failed"])]
        for server in SERVERS
        for size, t in part["throughput"][server].items()
    ]  # fmt: skip
    headers = ["server", "rows/req", "requests", "req/s", "rows/s", "p50 ms", "p99 ms", "failed"]
    ratios = ", ".join(f"{fmt(r, 2)} at {size} row(s)" for size, r in part["ratio"].items())
    p, r = part["promotions"], part.get("restarts")
    ok = p["failed"] == 0 and p["not_followed"] == 0
    promoted = [
        f"arrivals serve: event posted -> 1st answer from the new version ({p['count']})",
        *(f"{fmt(p['follow_ms'][k], 0)} ms" for k in ("p50", "max")),
        f"{p['failed']} of {p['requests']}",
        "yes" if ok else "**NO**",
    ]
    promotion_rows = [promoted]
    if r:
        restarted = [f"mlflow models serve: alias moved, restart -> 1st 200 ({r['count']})"]
        restarted += [f"{fmt(r['restart_seconds'][k], 1)} s" for k in ("p50", "max")]
        restarted += [f"{r['failed']} (a client retries every {ERROR_PAUSE * 1000:g} ms)", "—"]
        promotion_rows.append(restarted)
    mlflow = (
        f"`mlflow models serve` (--workers 1) reads the alias once, at start (up from cold in "
        f"{fmt(part.get('mlflow_start_seconds'))} s; same predictions as ours for the same "
        f"version: {'yes' if part.get('same_predictions') else 'no'}): a promotion is a restart "
        "(SIGTERM, start again)"
    )
    if r:
        mlflow += (
            f", after which it served the new version {r['served_new_version']} of "
            f"{r['count']} times (by its predictions on the {part['probe_rows']} tips rows)"
        )
    return "\n".join(
        [
            "## Serving the champion: `arrivals serve` beside `mlflow models serve`",
            "",
            render_table(headers, rows),
            "",
            render_table(
                ["promotion under steady load", "p50", "max", "failed requests", "0 failed"],
                promotion_rows,
            ),
            "",
            f"Closed loops of {part['threads']} client threads (httpx keep-alive), timed "
            f"{part['seconds']:g} s after {WARMUP_SECONDS:g} s of warm-up, the two servers in turn "
            f"on the same stack; tips feature rows as JSON dataframe_split; v{part['versions'][0]} "
            f"served, v{part['versions'][1]} the other version promoted. "
            f"Requests/s ours / mlflow: {ratios or '—'}. A promotion here is the alias move plus "
            "the `model.champion.promoted` event the retrain emits (the training is timed by the "
            f"other parts), every {p['spacing_seconds']:g} s under {p['steady_threads']} steady "
            "1-row clients; the serve's alias check was parked, so the event alone swaps. "
            f"{mlflow}.",
            "",
        ]
    )
