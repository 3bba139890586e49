"""`make bench`: how fast a dropped file becomes a champion decision, bursts, retrain cost.

The project's issue #4. Targets are measured and reported here, never asserted in tests.

Parts (choose with --parts; the default is all of them):
  latency          single drops into a fresh stack (worker poll from params.yaml); every
                   stage is timed with the ledger's, Prefect's and MLflow's own timestamps
  window           pairs of drops, the second placed as soon as the first run has judged
                   its version (its last round is over): it lands while the automation's
                   trigger ignores arrivals, so the run that took the first file must take
                   it (else it waits for the sensor's sweep, 10 s later)
  burst            100, then 500 distinct files copied into the inbox by one `cp`
  default-polling  the single-drop latency again with Prefect's default 10 s worker poll
  retrain          the retrain stage alone (no servers) as accepted data grows to 1M rows

Every stack is started with `arrivals up --detach` in its own temporary home, on free
ports, with the producer's clock parked, and always stopped with `arrivals down`.
Results: markdown tables on stdout, JSON in bench/results/latest.json plus a timestamped copy.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pandas as pd

# Everything the parent needs from the project is imported once, at start: other people edit
# the code while a long run goes on, and stopping the stacks must never depend on a later import.
from arrivals.harness import write_params
from shared.dataset import ensure_holdout, training_pool
from shared.events import FILE_ARRIVED, file_resource_id
from shared.fs import atomic_write_json, sha256_file
from shared.ledger import CLAIMED, FileRecord, Ledger
from shared.logs import setup_logging
from shared.settings import (
    PROJECT_ROOT,
    ColumnSpec,
    Settings,
    load_settings,
)

log = logging.getLogger("arrivals.bench")
T = TypeVar("T")

BIN = Path(sys.executable).parent
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
PARTS = ("latency", "window", "burst", "default-polling", "retrain", "decisions")
PARKED_CRON = "0 0 1 1 *"  # the producer's clock must not drop files while we measure
DROP_ROWS = 20
BURST_SIZES = (100, 500)
DEFAULT_POLL_SECONDS = 10.0  # Prefect's own default for PREFECT_WORKER_QUERY_SECONDS
SEED_CRON_SECONDS = 120.0  # the seed produced a batch every two minutes
TERMINAL_FILE_STATES = ("trained", "rejected")
TERMINAL_RUN_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
ACTIVE_RUN_STATES = ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED"]
RETRAIN_FLOW = "retrain"
RETRAIN_FILE_ROWS = 10_000
RETRAIN_NEW_ROWS = 1_000
RETRAIN_WINDOW = 200_000
RETRAIN_CASES = (  # accepted rows, training policy
    (10_000, "all"),
    (100_000, "all"),
    (100_000, "window"),
    (1_000_000, "window"),
)

# Stages of one drop, each in seconds after the file became complete in the inbox.
STAGES = (
    ("detected", "detected by the sensor (ledger)"),
    ("event_received", "event received by Prefect"),
    ("run_created", "flow run created (automation)"),
    ("run_pending", "worker picked it up (Pending)"),
    ("running", "flow run Running"),
    ("version_registered", "MLflow version registered"),
    ("champion_decided", "champion decided (ledger)"),
)
LATENCY_TARGETS: dict[str, dict[str, float]] = {
    "running": {"p50": 3.0, "p95": 6.0},
    "champion_decided": {"p50": 15.0},
}
BURST_TARGETS: dict[int, dict[str, float]] = {
    100: {"lost": 0, "duplicated": 0},
    500: {"all_terminal_seconds": 60.0, "trainings": 10, "lost": 0, "duplicated": 0},
}
RETRAIN_TARGETS: dict[tuple[int, str], dict[str, float]] = {
    (1_000_000, "window"): {"seconds": 60.0, "peak_rss_mb": 2048.0},
}


class BenchError(RuntimeError):
    """A measurement could not be taken (a stack did not start, a wait timed out)."""


# -- pure helpers ---------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linearly interpolated like numpy's default; None if empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float | None]) -> dict[str, Any]:
    """Count, p50, p95 and max of the values that were measured (None = not measured)."""
    present = [v for v in values if v is not None]
    return {
        "n": len(present),
        "p50": percentile(present, 50),
        "p95": percentile(present, 95),
        "max": max(present, default=None),
    }


def meets(measured: dict[str, Any], target: dict[str, float]) -> bool | None:
    """Whether every targeted value is measured and at most its limit; None without a target."""
    if not target:
        return None
    return all(
        measured.get(key) is not None and measured[key] <= limit for key, limit in target.items()
    )


TARGET_LABELS = {  # key -> (shown name, unit)
    "p50": ("p50", " s"),
    "p95": ("p95", " s"),
    "all_terminal_seconds": ("all terminal", " s"),
    "trainings": ("trainings", ""),
    "lost": ("lost", ""),
    "duplicated": ("dup", ""),
    "seconds": ("train()", " s"),
    "peak_rss_mb": ("peak RSS", " MB"),
}


def describe_target(target: dict[str, float]) -> str:
    """A target as a table cell, e.g. `p50 ≤ 3 s, p95 ≤ 6 s`; an em dash without one."""
    parts = []
    for key, limit in target.items():
        name, unit = TARGET_LABELS.get(key, (key, ""))
        parts.append(f"{name} ≤ {limit:g}{unit}")
    return ", ".join(parts) or "—"


def fmt(value: float | int | None, digits: int = 1) -> str:
    """A number for a table cell; an em dash when it was not measured."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def verdict(ok: bool | None) -> str:
    """A target check as a table cell."""
    return "—" if ok is None else ("yes" if ok else "**NO**")


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], left: Sequence[int] = (0,)
) -> str:
    """A markdown table: the columns numbered in `left` left-aligned, the others right-aligned."""
    if any(len(row) != len(headers) for row in rows):
        raise ValueError("every row needs one cell per header")
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [
            v.ljust(widths[i]) if i in left else v.rjust(widths[i]) for i, v in enumerate(values)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 2) if i in left else "-" * (w + 1) + ":" for i, w in enumerate(widths)
    )
    return "\n".join([line(cells[0]), rule + "|"] + [line(row) for row in cells[1:]])


def synthetic_rows(
    pool: pd.DataFrame,
    n: int,
    rng: np.random.Generator,
    float_columns: Sequence[str],
    jitter: float = 0.02,
) -> pd.DataFrame:
    """`n` rows resampled from `pool`, float columns scaled by a little noise (2 decimals).

    The noise is multiplicative and bounded to ±50 %, so a value never changes sign and
    a column's minimum of 0 still holds; other columns are copied as they are.
    """
    picked = pool.iloc[rng.integers(0, len(pool), size=n)].reset_index(drop=True)
    for column in float_columns:
        noise = np.clip(1.0 + rng.normal(0.0, jitter, size=n), 0.5, 1.5)
        picked[column] = (picked[column].to_numpy(dtype=float) * noise).round(2)
    return picked


def typed_frame(frame: pd.DataFrame, columns: dict[str, ColumnSpec]) -> pd.DataFrame:
    """The declared columns with the dtypes `consumer.validate.validate_csv` gives them."""
    dtypes = {"float": "float64", "int": "int64", "category": object, "string": object}
    return pd.DataFrame(
        {name: frame[name].astype(dtypes[spec.type]) for name, spec in columns.items()}
    )


def float_columns_of(columns: dict[str, ColumnSpec]) -> list[str]:
    """The declared float columns (the ones synthetic rows jitter)."""
    return [name for name, spec in columns.items() if spec.type == "float"]


def duplicated_names(names: Sequence[str], files_by_version: dict[str, list[str]]) -> list[str]:
    """Names among `names` that more than one model version lists as its new files."""
    wanted = set(names)
    seen: dict[str, int] = {}
    for files in files_by_version.values():
        for name in set(files) & wanted:
            seen[name] = seen.get(name, 0) + 1
    return sorted(name for name, count in seen.items() if count > 1)


def task_label(name: str) -> str:
    """The task of a task-run name: `ingest x.csv` -> ingest, `train_model-1a2` -> train_model."""
    return "ingest" if name.startswith("ingest ") else name.rsplit("-", 1)[0]


def run_breakdown(
    running: float, completed: float, spans: Sequence[tuple[str, float, float]]
) -> dict[str, float]:
    """Where a run's time went: engine start, each task (summed), gaps, and the end.

    `spans` are (task, start, end) in epoch seconds; the parts add up to completed - running.
    """
    if not spans:
        return {"no tasks": completed - running}
    parts = {"engine start (Running -> 1st task)": min(start for _, start, _ in spans) - running}
    for task, start, end in sorted(spans, key=lambda span: span[1]):
        parts[task] = parts.get(task, 0.0) + (end - start)
    last = max(end for _, _, end in spans)
    parts["after the last task (-> Completed)"] = completed - last
    parts["between tasks"] = (completed - running) - sum(parts.values())
    return parts


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


# -- waiting -------------------------------------------------------------------------------
def wait_for(
    condition: Callable[[], T | None], timeout: float, what: str, every: float = 0.25
) -> T:
    """Poll `condition` until it returns something truthy; BenchError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# -- a stack of our own ------------------------------------------------------------------------
def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (all bound at once, then released)."""
    with contextlib.ExitStack() as sockets:
        ports = []
        for _ in range(count):
            sock = sockets.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    return ports


def write_bench_config(path: Path, overrides: dict) -> Path:
    """The project's params.yaml, producer clock parked, source absolute, ledger in the home."""
    parked = {
        "automation": {"cron_schedule": PARKED_CRON},
        "paths": {"ledger_url": None},  # never a shared database: this home's SQLite
    }
    return write_params(path, parked, overrides)


def port_answers(host: str, port: int) -> bool:
    """Something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_by_pidfiles(run_dir: Path, timeout: float = 20.0) -> list[int]:
    """Stop the process groups of `<home>/run/*.pid` ("pid start-time", as the stack writes).

    The fallback when `arrivals down` itself fails: a pid whose start time differs is some
    other process now and is left alone; SIGTERM first, SIGKILL after `timeout`.
    """
    groups = []
    for pidfile in sorted(run_dir.glob("*.pid")):
        try:
            pid_text, started = pidfile.read_text().split()[:2]
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
                groups.append(pid)
    deadline = time.monotonic() + timeout
    while any(_group_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.2)
    for group in groups:
        if _group_alive(group):
            log.warning("process group %d ignored SIGTERM; killing it", group)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
    return groups


class BenchStack:
    """One fresh isolated stack: its own home, params.yaml and free ports, driven by the CLI."""

    def __init__(self, folder: Path, overrides: dict) -> None:
        self.folder = folder
        self.config = write_bench_config(folder / "params.yaml", overrides)
        home = folder / "home"
        prefect_port, mlflow_port = free_ports(2)
        self.env = {
            **os.environ,
            "ARRIVALS_HOME": str(home),
            "ARRIVALS_CONFIG": str(self.config),
            "ARRIVALS_PREFECT_PORT": str(prefect_port),
            "ARRIVALS_MLFLOW_PORT": str(mlflow_port),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        base = load_settings(self.config)
        self.settings: Settings = base.model_copy(
            update={
                "paths": base.paths.model_copy(update={"home": home.resolve()}),
                "services": base.services.model_copy(
                    update={"prefect_port": prefect_port, "mlflow_port": mlflow_port}
                ),
            }
        )
        self.http = httpx.Client(timeout=10.0)
        self._ledger: Ledger | None = None
        self.up_seconds: float | None = None
        self.since = _iso(time.time() - 60)

    @property
    def ledger(self) -> Ledger:
        """The home's ledger (opened once the stack created it)."""
        if self._ledger is None:
            self._ledger = Ledger(self.settings.ledger_url)
        return self._ledger

    def _arrivals(self, *args: str, timeout: float, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "arrivals"), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,
        )

    def up(self) -> None:
        """`arrivals up --detach`; BenchError with the CLI's last lines if it fails."""
        s = self.settings
        log.info(
            "Starting a stack in %s (Prefect :%d, MLflow :%d, worker poll %g s)",
            s.home,
            s.services.prefect_port,
            s.services.mlflow_port,
            s.services.worker_query_seconds,
        )
        started = time.monotonic()
        result = self._arrivals("up", "--detach", timeout=s.services.startup_timeout_seconds + 120)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-10:])
            raise BenchError(f"arrivals up failed (exit {result.returncode}):\n{tail}")
        self.up_seconds = time.monotonic() - started
        log.info("Stack healthy in %.1f s", self.up_seconds)

    def down(self) -> None:
        """`arrivals down`, else the pid files; shielded from Ctrl-C and SIGTERM meanwhile."""
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
        self.http.close()
        shielded = {
            sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            try:
                result = self._arrivals("down", timeout=180, start_new_session=True)
                failure = result.stderr.strip()[-500:] if result.returncode != 0 else None
            except subprocess.TimeoutExpired:
                failure = "timed out after 180 s"
            if failure is not None:
                log.error("arrivals down failed (%s); stopping by pid files instead", failure)
                stopped = stop_by_pidfiles(self.settings.dirs.run)
                log.info("Stopped process groups %s", stopped or "(none was running)")
        finally:
            for sig, previous in shielded.items():
                signal.signal(sig, previous)
        services = self.settings.services
        for port in (services.prefect_port, services.mlflow_port):
            if port_answers(services.host, port):
                log.error("port %d still answers after stopping %s", port, self.folder)
        log.info("Stack in %s stopped", self.settings.home)

    # -- reading the three records ------------------------------------------------------------
    def prefect(self, method: str, path: str, **kwargs) -> Any:
        response = self.http.request(method, f"{self.settings.prefect_api_url}{path}", **kwargs)
        response.raise_for_status()
        return response.json()

    def flow_run(self, run_id: str) -> dict:
        return self.prefect("GET", f"/flow_runs/{run_id}")

    def state_time(self, run_id: str, state_type: str) -> float | None:
        """When the run first entered `state_type`, by Prefect's state history."""
        states = self.prefect("GET", "/flow_run_states/", params={"flow_run_id": run_id})
        times = [_epoch(s["timestamp"]) for s in states if s["type"] == state_type]
        return min(times) if times else None

    def task_spans(self, run_id: str) -> list[tuple[str, float, float]]:
        """(task, start, end) of every finished task run of a flow run."""
        body = {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}
        return [
            (task_label(t["name"]), _epoch(t["start_time"]), _epoch(t["end_time"]))
            for t in self.prefect("POST", "/task_runs/filter", json=body)
            if t.get("start_time") and t.get("end_time")
        ]

    def events_about(self, name: str, resource_id: str) -> list[dict]:
        """The events `name` about `resource_id` that Prefect received (up to 50)."""
        body = {
            "filter": {
                "event": {"name": [name]},
                "resource": {"id": [resource_id]},
                "occurred": {"since": self.since},
            },
            "limit": 50,
        }
        return self.prefect("POST", "/events/filter", json=body)["events"]

    def event_received(self, name: str, resource_id: str) -> float | None:
        """When Prefect first received event `name` about `resource_id`; None if it has none."""
        found = self.events_about(name, resource_id)
        return min((_epoch(e["received"]) for e in found), default=None)

    def event_total(self, name: str, since: float) -> int:
        """How many events `name` Prefect received that occurred after `since` (epoch seconds)."""
        body = {
            "filter": {"event": {"name": [name]}, "occurred": {"since": _iso(since)}},
            "limit": 1,
        }
        return int(self.prefect("POST", "/events/filter", json=body)["total"])

    def automation_backlog(self, since: float) -> int:
        """Automation firings since `since` whose run-deployment action has not run yet."""
        fired = self.event_total("prefect.automation.triggered", since)
        acted = self.event_total("prefect.automation.action.executed", since)
        return fired - acted - self.event_total("prefect.automation.action.failed", since)

    def wait_settled(self, since: float, timeout: float) -> bool:
        """Until every automation firing since `since` acted and no retrain run is active."""
        try:
            wait_for(
                lambda: (
                    self.automation_backlog(since) <= 0 and self.count_runs(ACTIVE_RUN_STATES) == 0
                ),
                timeout,
                "the automation's run-deployment backlog to drain",
                every=1.0,
            )
        except BenchError as error:
            log.warning("%s", error)
            return False
        return True

    def version_created(self, version: str) -> float | None:
        """MLflow's creation time of a version of the model, in epoch seconds."""
        response = self.http.get(
            f"{self.settings.mlflow_url}/api/2.0/mlflow/model-versions/get",
            params={"name": self.settings.model.name, "version": version},
        )
        response.raise_for_status()
        return int(response.json()["model_version"]["creation_timestamp"]) / 1000

    def count_runs(self, states: Sequence[str] | None = None, after: float | None = None) -> int:
        """Retrain flow runs in `states`, expected to start after `after` (epoch seconds)."""
        runs: dict[str, Any] = {}
        if states is not None:
            runs["state"] = {"type": {"any_": list(states)}}
        if after is not None:
            runs["expected_start_time"] = {"after_": _iso(after)}
        body: dict[str, Any] = {"flows": {"name": {"any_": [RETRAIN_FLOW]}}}
        if runs:
            body["flow_runs"] = runs
        return int(self.prefect("POST", "/flow_runs/count", json=body))

    def wait_idle(self, timeout: float = 300) -> None:
        """Until no retrain run is scheduled, pending or running."""
        wait_for(lambda: self.count_runs(ACTIVE_RUN_STATES) == 0, timeout, "retrain runs to end")

    def wait_run_ended(self, run_id: str, timeout: float) -> dict:
        """The flow run once it is in a terminal state."""
        return wait_for(
            lambda: (run := self.flow_run(run_id))["state_type"] in TERMINAL_RUN_STATES and run,
            timeout,
            f"flow run {run_id} to end",
        )

    def wait_terminal(self, sha256: str, timeout: float) -> FileRecord:
        """The ledger row of `sha256` once it is trained or rejected."""

        def terminal() -> FileRecord | None:
            record = self.ledger.get(sha256)
            return record if record is not None and record.state in TERMINAL_FILE_STATES else None

        return wait_for(terminal, timeout, f"file {sha256[:12]} to be trained or rejected")

    def version_files(self) -> dict[str, list[str]]:
        """The new files of every version, from `<home>/metrics/version-N.json`."""
        found = {}
        for path in sorted(self.settings.dirs.metrics.glob("version-*.json")):
            summary = json.loads(path.read_text(encoding="utf-8"))
            found[str(summary["version"])] = list(summary.get("files", []))
        return found


@contextlib.contextmanager
def running_stack(folder: Path, overrides: dict) -> Iterator[BenchStack]:
    """A healthy fresh stack for the `with` block; `arrivals down` always runs after it."""
    stack = BenchStack(folder, overrides)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


# -- part 1 and 4: single drops ------------------------------------------------------------
def new_content(
    pool: pd.DataFrame, rows: int, rng: np.random.Generator, floats: list[str], seen: set[str]
) -> tuple[bytes, str]:
    """CSV bytes of synthetic rows whose sha256 is not in `seen` (added to it)."""
    while True:
        data = synthetic_rows(pool, rows, rng, floats).to_csv(index=False).encode()
        sha = hashlib.sha256(data).hexdigest()
        if sha not in seen:
            seen.add(sha)
            return data, sha


def place_file(data: bytes, inbox: Path, name: str, staging: Path | None = None) -> float:
    """Write under a temp name (in `staging`, else the inbox), rename it in; the instant after."""
    tmp = (staging or inbox) / f".{name}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, inbox / name)
    return time.time()


def drop_timestamps(stack: BenchStack, record: FileRecord, run: dict) -> dict[str, float | None]:
    """Every stage of one file, as each system recorded it (epoch seconds)."""
    received = wait_for(
        lambda: stack.event_received(FILE_ARRIVED, file_resource_id(record.sha256)),
        30,
        f"the arrival event of {record.name} in Prefect's event feed",
    )
    version = record.model_version
    return {
        "detected": record.detected_at,
        "event_received": received,
        "run_created": _epoch(run["created"]),
        "run_pending": stack.state_time(run["id"], "PENDING"),
        "running": _epoch(run["start_time"]),
        "version_registered": stack.version_created(version) if version else None,
        "champion_decided": record.finished_at,
        "run_completed": _epoch(run["end_time"]),
    }


def measure_drops(
    stack: BenchStack, drops: int, rng: np.random.Generator, *, outside: bool, timeout: float
) -> dict[str, Any]:
    """One cold drop, then `drops` spaced drops; each waits for its run to end."""
    s = stack.settings
    pool = training_pool(s.dataset, s.holdout)
    floats = float_columns_of(s.dataset.columns)
    staging = stack.folder / "staging" if outside else None
    if staging is not None:
        staging.mkdir(exist_ok=True)
    seen: set[str] = set()
    measured = []
    for index in range(drops + 1):
        stack.wait_idle()
        data, sha = new_content(pool, DROP_ROWS, rng, floats, seen)
        name = f"drop-{index:03d}.csv"
        complete = place_file(data, s.dirs.inbox, name, staging)
        record = stack.wait_terminal(sha, timeout)
        if record.claimed_by is None:
            raise BenchError(f"{name} is {record.state} but no run claimed it")
        run = stack.wait_run_ended(record.claimed_by, timeout)
        stamps = drop_timestamps(stack, record, run)
        offsets = {k: (v - complete if v is not None else None) for k, v in stamps.items()}
        inside = (
            run_breakdown(
                stamps["running"], stamps["run_completed"], stack.task_spans(record.claimed_by)
            )
            if stamps["running"] is not None and stamps["run_completed"] is not None
            else {}
        )
        measured.append(
            {
                "name": name,
                "sha256": sha,
                "state": record.state,
                "version": record.model_version,
                "flow_run": record.claimed_by,
                "file_complete": complete,
                "timestamps": stamps,
                "offsets": offsets,
                "inside_run": inside,
            }
        )
        log.info(
            "%s %s: detected +%s s, Running +%s s, champion decided +%s s (v%s, %s)",
            "cold drop" if index == 0 else f"drop {index}/{drops}",
            name,
            fmt(offsets["detected"], 2),
            fmt(offsets["running"]),
            fmt(offsets["champion_decided"]),
            record.model_version,
            record.state,
        )
    cold, rest = measured[0], measured[1:]
    return {
        "worker_query_seconds": s.services.worker_query_seconds,
        "stack_up_seconds": stack.up_seconds,
        "placed_from": "a folder outside the inbox" if outside else "a temp name in the inbox",
        "rows_per_drop": DROP_ROWS,
        "cold": cold,
        "drops": rest,
        "summary": {
            key: summarize([d["offsets"][key] for d in rest])
            for key in [*(k for k, _ in STAGES), "run_completed"]
        },
        "inside_run": {
            key: summarize([d["inside_run"].get(key) for d in rest])
            for key in dict.fromkeys(k for d in rest for k in d["inside_run"])
        },
    }


def measure_window_drops(
    stack: BenchStack, pairs: int, rng: np.random.Generator, *, timeout: float
) -> dict[str, Any]:
    """Pairs of drops, the second placed the moment the first run has judged (see `PARTS`)."""
    s = stack.settings
    pool = training_pool(s.dataset, s.holdout)
    floats = float_columns_of(s.dataset.columns)
    seen: set[str] = set()
    measured = []
    for index in range(pairs):
        stack.wait_idle()
        data, first_sha = new_content(pool, DROP_ROWS, rng, floats, seen)
        place_file(data, s.dirs.inbox, f"window-{index:03d}-first.csv")
        run_id = wait_for(
            lambda sha=first_sha: (r := stack.ledger.get(sha)) and r.claimed_by,
            timeout,
            f"window pair {index}: a run to claim the first file",
            every=0.05,
        )
        wait_for(
            lambda run=run_id: any(t == "register_and_judge" for t, *_ in stack.task_spans(run)),
            timeout,
            f"window pair {index}: the first run to judge its version",
            every=0.05,
        )
        decided = stack.ledger.get(first_sha).finished_at
        data, sha = new_content(pool, DROP_ROWS, rng, floats, seen)
        name = f"window-{index:03d}-second.csv"
        complete = place_file(data, s.dirs.inbox, name)
        record = stack.wait_terminal(sha, timeout)
        # Prefect persists events in batches: wait until the first one is there.
        announced = len(
            wait_for(
                lambda sha=sha: stack.events_about(FILE_ARRIVED, file_resource_id(sha)),
                30,
                f"the arrival event of {name} in Prefect's event feed",
            )
        )
        measured.append(
            {
                "name": name,
                "state": record.state,
                "placed_after_first_decided": complete - decided if decided else None,
                "champion_decided": record.finished_at - complete,
                "same_run": record.claimed_by == run_id,
                "announcements": announced,
            }
        )
        log.info(
            "window pair %d/%d: second file decided +%s s, by the first's run: %s, "
            "announced %d time(s)",
            index + 1,
            pairs,
            fmt(measured[-1]["champion_decided"]),
            measured[-1]["same_run"],
            announced,
        )
    return {
        "pairs": measured,
        "summary": summarize([m["champion_decided"] for m in measured]),
        "taken_by_the_listening_run": sum(m["same_run"] for m in measured),
        "announced_again": sum(m["announcements"] > 1 for m in measured),
    }


def render_window(part: dict[str, Any]) -> str:
    """The window pairs as one table row."""
    summary, pairs = part["summary"], len(part["pairs"])
    row = [
        "second file, placed when the first run has judged",
        fmt(pairs),
        *(fmt(summary[k], 2) for k in ("p50", "p95", "max")),
        f"{part['taken_by_the_listening_run']}/{pairs}",
        f"{part['announced_again']}/{pairs}",
    ]
    headers = [
        "drop into the trigger's window",
        "pairs",
        "champion p50",
        "p95",
        "max",
        "taken by the listening run",
        "announced again (sweep)",
    ]
    return "\n".join(
        [
            "## A file landing while the trigger ignores arrivals (seconds after file complete)",
            "",
            render_table(headers, [row]),
            "",
        ]
    )


# -- part 2: bursts ----------------------------------------------------------------------------
def measure_burst(
    stack: BenchStack,
    size: int,
    rng: np.random.Generator,
    *,
    timeout: float,
    settle_timeout: float,
) -> dict[str, Any]:
    """`size` distinct files copied into the inbox by one `cp`; until all are terminal.

    Then until the automation has acted on every arrival event (one run-deployment per
    event, most of them cancelled by the single-flight limit), so the next burst starts
    on a quiet server; that backlog is reported too.
    """
    s = stack.settings
    pool = training_pool(s.dataset, s.holdout)
    floats = float_columns_of(s.dataset.columns)
    staging = stack.folder / f"burst-{size}"
    staging.mkdir()
    seen: set[str] = {r.sha256 for r in stack.ledger.files()}
    paths, shas = [], set()
    for index in range(size):
        data, sha = new_content(pool, DROP_ROWS, rng, floats, seen)
        path = staging / f"burst{size}-{index:04d}.csv"
        path.write_bytes(data)
        paths.append(path)
        shas.add(sha)
    names = [p.name for p in paths]
    stack.wait_idle()
    log.info("Burst of %d: copying them into the inbox with one cp", size)
    started = time.time()
    subprocess.run(["cp", *map(str, paths), str(s.dirs.inbox)], check=True, timeout=300)
    copied = time.time()

    def files() -> dict[str, FileRecord]:
        return {r.sha256: r for r in stack.ledger.files() if r.sha256 in shas}

    def all_terminal() -> bool:
        found = files()
        return len(found) == size and all(r.state in TERMINAL_FILE_STATES for r in found.values())

    try:
        wait_for(all_terminal, timeout, f"all {size} files of the burst to be terminal", every=0.5)
    except BenchError as error:
        log.warning("%s", error)
    observed = time.time() - started
    records = files()
    terminal = [r for r in records.values() if r.state in TERMINAL_FILE_STATES]
    lost = size - len(terminal)
    if lost:
        states: dict[str, int] = {}
        for r in records.values():
            if r.state not in TERMINAL_FILE_STATES:
                states[r.state] = states.get(r.state, 0) + 1
        states["not in the ledger"] = size - len(records)
        log.warning(
            "Burst of %d: %d file(s) not terminal after %.0f s: %s", size, lost, timeout, states
        )
    versions = {r.model_version for r in terminal if r.model_version}
    duplicated = duplicated_names(names, stack.version_files())
    all_terminal_seconds = (
        max(r.finished_at for r in terminal) - started if terminal and not lost else None
    )
    log.info(
        "Burst of %d: all terminal in %s s, %d training(s), %d lost, %d duplicated",
        size,
        fmt(all_terminal_seconds),
        len(versions),
        lost,
        len(duplicated),
    )
    runs_when_terminal = stack.count_runs(after=started - 1)
    log.info("Burst of %d: waiting for the automation to act on every arrival event", size)
    settled = stack.wait_settled(started - 1, timeout=settle_timeout)
    last_created = stack.prefect(
        "POST",
        "/flow_runs/filter",
        json={
            "flows": {"name": {"any_": [RETRAIN_FLOW]}},
            "flow_runs": {"expected_start_time": {"after_": _iso(started - 1)}},
            "sort": "EXPECTED_START_TIME_DESC",
            "limit": 1,
        },
    )
    runs = {r.claimed_by for r in terminal if r.claimed_by}
    run_seconds = []
    for run_id in sorted(runs):
        run = stack.flow_run(run_id)
        if run.get("start_time") and run.get("end_time"):
            run_seconds.append(_epoch(run["end_time"]) - _epoch(run["start_time"]))

    def latest(attribute: str) -> float | None:
        values = [getattr(r, attribute) for r in records.values() if getattr(r, attribute)]
        return max(values) - started if values and len(values) == size else None

    result = {
        "files": size,
        "cp_seconds": copied - started,
        "all_detected_seconds": latest("detected_at"),
        "all_announced_seconds": latest("announced_at"),
        "all_terminal_seconds": all_terminal_seconds,
        "observed_seconds": observed,
        "trainings": len(versions),
        "trained_without_version": sum(
            1 for r in terminal if r.state == "trained" and not r.model_version
        ),
        "rejected": sum(1 for r in terminal if r.state == "rejected"),
        "lost": lost,
        "duplicated": len(duplicated),
        "duplicated_names": duplicated[:20],
        "runs_that_trained": len(runs),
        "run_seconds": run_seconds,
        "flow_runs_created_when_terminal": runs_when_terminal,
        "flow_runs_created": stack.count_runs(after=started - 1),
        "automation_settled": settled,
        "last_run_created_seconds": (
            _epoch(last_created[0]["created"]) - started if last_created else None
        ),
        "automation_triggers": stack.event_total("prefect.automation.triggered", started - 1),
        "flow_runs_completed": stack.count_runs(["COMPLETED"], after=started - 1),
        "flow_runs_cancelled": stack.count_runs(["CANCELLED"], after=started - 1),
    }
    return result


# -- part 3: retrain cost without servers ----------------------------------------------------------
def build_accepted_home(folder: Path, config: Path, rows: int, rng: np.random.Generator) -> Path:
    """A home whose ledger holds `rows` accepted rows as trained files with Parquet copies."""
    home = folder / f"home-{rows}"
    base = load_settings(config)
    settings = base.model_copy(update={"paths": base.paths.model_copy(update={"home": home})})
    dirs = settings.dirs
    dirs.accepted.mkdir(parents=True, exist_ok=True)
    ensure_holdout(settings.dataset, settings.holdout, dirs.holdout)
    pool = training_pool(settings.dataset, settings.holdout)
    floats = float_columns_of(settings.dataset.columns)
    ledger = Ledger(settings.ledger_url)
    try:
        rows_by_sha: dict[str, int] = {}
        for index in range(math.ceil(rows / RETRAIN_FILE_ROWS)):
            n = min(RETRAIN_FILE_ROWS, rows - index * RETRAIN_FILE_ROWS)
            frame = typed_frame(synthetic_rows(pool, n, rng, floats), settings.dataset.columns)
            tmp = dirs.accepted / f".synthetic-{index}.parquet.tmp"
            frame.to_parquet(tmp, index=False)  # as consumer.ingest.ingest writes its copies
            sha, size = sha256_file(tmp), tmp.stat().st_size
            tmp.replace(dirs.accepted / f"{sha}.parquet")
            name = f"synthetic-{index:04d}.csv"
            arrival = ledger.record_arrival(
                name=name,
                path=str(dirs.archive / name),
                size=size,
                sha256=sha,
                detected_via="scan",
            )
            ledger.mark_announced(arrival.id)
            rows_by_sha[sha] = n
        claimed = ledger.claim_pending("bench-setup", ttl_seconds=3600)
        if len(claimed) != len(rows_by_sha):
            raise BenchError(f"claimed {len(claimed)} of {len(rows_by_sha)} synthetic files")
        ledger.mark_trained(rows_by_sha, run_id="bench-setup", version="0")
    finally:
        ledger.close()
    return home


class _NoEmitter:
    """train() emits nothing; the context still needs an emitter."""

    def emit(self, events) -> None:
        """Drop the events."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@contextlib.contextmanager
def _timed(module: Any, name: str, totals: dict[str, float], key: str) -> Iterator[None]:
    """Add the time spent in `module.name` to `totals[key]` while the block runs."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - started

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def retrain_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In a process of its own: time `consumer.retrain.train` once; peak RSS of this process."""
    import pyarrow.parquet  # noqa: F401  imported by the first read_parquet; not the stage's cost

    import consumer.training as training
    from consumer import ingest as ingesting
    from consumer import retrain as stages
    from consumer.context import RetrainContext

    settings = load_settings()
    settings = settings.model_copy(
        update={
            "training": settings.training.model_copy(
                update={"policy": spec["policy"], "max_rows": spec["max_rows"]}
            )
        }
    )
    rng = np.random.default_rng(spec["seed"])
    pool = training_pool(settings.dataset, settings.holdout)
    frame = typed_frame(
        synthetic_rows(pool, spec["new_rows"], rng, float_columns_of(settings.dataset.columns)),
        settings.dataset.columns,
    )
    record = _new_record(spec["new_rows"])
    ledger = Ledger(settings.ledger_url)
    ctx = RetrainContext(
        settings=settings, ledger=ledger, emitter=_NoEmitter(), run_id="bench-retrain", logger=log
    )
    new = ingesting.Accepted(record, settings.dirs.archive / record.name, frame)
    rss_before = _peak_rss_mb()
    parts = {"read": 0.0, "fit_and_evaluate": 0.0}
    try:
        with (
            _timed(stages, "load_accepted", parts, "read"),
            _timed(training, "train_and_evaluate", parts, "fit_and_evaluate"),
        ):
            started = time.perf_counter()
            trained = stages.train(ctx, [new])
            seconds = time.perf_counter() - started
    finally:
        ledger.close()
    return {
        "seconds": seconds,
        "read_seconds": parts["read"],
        "fit_and_evaluate_seconds": parts["fit_and_evaluate"],
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_train_mb": rss_before,
        "train_rows": trained.result.train_rows,
        "files_read": len(trained.earlier) + 1,
        "metrics": trained.result.metrics,
    }


def _new_record(rows: int) -> FileRecord:
    """A claimed ledger record for the new 1,000-row file (train() never writes it back)."""
    now = time.time()
    return FileRecord(
        sha256=hashlib.sha256(f"bench-new-{now}".encode()).hexdigest(),
        name="bench-new.csv",
        size=rows * 30,
        state=CLAIMED,
        stored_path="",
        detected_at=now,
        announced_at=now,
        claimed_by="bench-retrain",
        previous_claimed_by=None,
        finished_at=None,
        rows=None,
        model_version=None,
        reason=None,
    )


def measure_retrain(folder: Path, rng: np.random.Generator, timeout: float) -> list[dict]:
    """Every (accepted rows, policy) case in a child process of its own."""
    folder.mkdir(parents=True)
    config = write_bench_config(folder / "params.yaml", {})
    homes: dict[int, Path] = {}
    results = []
    for rows, policy in RETRAIN_CASES:
        if rows not in homes:
            started = time.monotonic()
            homes[rows] = build_accepted_home(folder, config, rows, rng)
            log.info(
                "Built a home with %d accepted rows in %.1f s", rows, time.monotonic() - started
            )
        spec = {
            "policy": policy,
            "max_rows": RETRAIN_WINDOW,
            "new_rows": RETRAIN_NEW_ROWS,
            "seed": int(rng.integers(1 << 31)),
        }
        env = {
            **os.environ,
            "ARRIVALS_HOME": str(homes[rows]),
            "ARRIVALS_CONFIG": str(config),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        log.info("Retrain on %d accepted rows + %d new, policy %s", rows, RETRAIN_NEW_ROWS, policy)
        child = subprocess.run(
            [sys.executable, "-m", "arrivals.bench", "--retrain-child", json.dumps(spec)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
        if child.returncode != 0:
            raise BenchError(f"retrain child for {rows} rows ({policy}) exited {child.returncode}")
        result = {
            "accepted_rows": rows,
            "new_rows": RETRAIN_NEW_ROWS,
            "policy": policy,
            "max_rows": RETRAIN_WINDOW if policy != "all" else None,
            **json.loads(child.stdout.strip().splitlines()[-1]),
        }
        log.info(
            "  %.1f s (read %.1f s, fit+evaluate %.1f s), peak RSS %.0f MB, %d rows trained",
            result["seconds"],
            result["read_seconds"],
            result["fit_and_evaluate_seconds"],
            result["peak_rss_mb"],
            result["train_rows"],
        )
        results.append(result)
    return results


# -- the report ------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    """Cores, memory, CPU model, versions, load: what the numbers were measured on."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024**2, 1)
    versions = {}
    for package in ("prefect", "mlflow", "scikit-learn", "pandas", "pyarrow", "watchdog"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    commit = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "memory_gib": memory_gib,
        "cpu_model": cpu,
        "machine": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "git": commit,
        "load_average_at_start": os.getloadavg(),
    }


STAGE_HEADERS = [
    "stage (s after file complete)",
    "n",
    "p50",
    "p95",
    "max",
    "cold 1st",
    "target",
    "met",
]


def _polling_parts(report: dict[str, Any]) -> list[tuple[str, dict]]:
    return [
        (key, part)
        for key in ("latency", "default-polling")
        if isinstance(part := report["parts"].get(key), dict) and "error" not in part
    ]


def render_stages(key: str, part: dict[str, Any]) -> str:
    """The stage table of one single-drop run, and what happened inside its retrain runs."""
    which = "params.yaml" if key == "latency" else "Prefect's default"
    rows = []
    for stage, label in STAGES:
        summary, target = part["summary"][stage], LATENCY_TARGETS.get(stage, {})
        rows.append(
            [
                label,
                fmt(summary["n"]),
                fmt(summary["p50"], 2),
                fmt(summary["p95"], 2),
                fmt(summary["max"], 2),
                fmt(part["cold"]["offsets"][stage], 2),
                describe_target(target),
                verdict(meets(summary, target)),
            ]
        )
    inside = [
        [task, fmt(s["p50"], 2), fmt(s["p95"], 2), fmt(s["max"], 2)]
        for task, s in part["inside_run"].items()
    ]
    return "\n".join(
        [
            f"## Single drop, worker poll {part['worker_query_seconds']:g} s ({which}): "
            f"{len(part['drops'])} drops of {part['rows_per_drop']} rows + 1 cold",
            "",
            f"Placed from {part['placed_from']} by rename; stack up in "
            f"{fmt(part['stack_up_seconds'])} s. Ledger, Prefect and MLflow timestamps; "
            "`cold 1st` is the stack's first drop (not in the percentiles).",
            "",
            render_table(STAGE_HEADERS, rows, left=(0, 6)),
            "",
            "Inside the retrain run (Prefect task runs, seconds):",
            "",
            render_table(["Running -> Completed", "p50", "p95", "max"], inside),
            "",
        ]
    )


def render_polling_comparison(parts: list[tuple[str, dict]]) -> str:
    """Event-driven pickup with each worker poll, beside the seed's cron as a reference."""
    rows = []
    for _, part in parts:
        running, champion = part["summary"]["running"], part["summary"]["champion_decided"]
        rows.append(
            [
                f"event-driven, worker poll {part['worker_query_seconds']:g} s",
                fmt(len(part["drops"])),
                *(fmt(running[k]) for k in ("p50", "p95", "max")),
                *(fmt(champion[k]) for k in ("p50", "p95", "max")),
            ]
        )
    wait = SEED_CRON_SECONDS  # a file waits U(0, wait) for the next tick before any work starts
    rows.append(
        [
            f"seed: cron every {wait:g} s (reference: wait for the tick)",
            "—",
            f"{wait / 2:g} (mean)",
            f"{wait * 0.95:g}",
            f"{wait:g}",
            f"{wait / 2:g} + run",
            f"{wait * 0.95:g} + run",
            f"{wait:g} + run",
        ]
    )
    headers = ["configuration", "drops"] + [
        f"{stage} {stat}" for stage in ("Running", "champion") for stat in ("p50", "p95", "max")
    ]
    return "\n".join(
        [
            "## File complete -> Running and -> champion decision (seconds)",
            "",
            render_table(headers, rows),
            "",
        ]
    )


def render_bursts(bursts: list[dict[str, Any]]) -> str:
    """One row per burst."""
    rows = []
    for b in (b for b in bursts if "error" not in b):
        target = BURST_TARGETS.get(b["files"], {})
        rows.append(
            [
                f"{b['files']} files, one cp",
                fmt(b["cp_seconds"], 2),
                fmt(b["all_detected_seconds"]),
                fmt(b["all_announced_seconds"]),
                fmt(b["all_terminal_seconds"]),
                fmt(b["trainings"]),
                fmt(b["lost"]),
                fmt(b["duplicated"]),
                fmt(b["rejected"]),
                " / ".join(str(b[f"flow_runs_{k}"]) for k in ("created", "completed", "cancelled")),
                fmt(b["last_run_created_seconds"]) + ("" if b["automation_settled"] else "+"),
                describe_target(target),
                verdict(meets(b, target)),
            ]
        )
    headers = [
        "burst",
        "cp",
        "all detected",
        "all announced",
        "all terminal",
        "trainings",
        "lost",
        "dup",
        "rejected",
        "flow runs created / completed / cancelled",
        "last run created",
        "target",
        "met",
    ]
    table = render_table(headers, rows, left=(0, 11))
    return "\n".join(["## Bursts (seconds after cp started)", "", table, ""])


def render_retrain(results: list[dict[str, Any]]) -> str:
    """One row per (accepted rows, policy)."""
    rows = []
    for r in results:
        target = RETRAIN_TARGETS.get((r["accepted_rows"], r["policy"]), {})
        rows.append(
            [
                f"{r['accepted_rows']:,} + {r['new_rows']:,} new",
                r["policy"] + (f" {r['max_rows']:,}" if r["max_rows"] else ""),
                f"{r['train_rows']:,}",
                fmt(r["files_read"]),
                fmt(r["read_seconds"], 2),
                fmt(r["fit_and_evaluate_seconds"], 2),
                fmt(r["seconds"], 2),
                fmt(r["rss_before_train_mb"], 0),
                fmt(r["peak_rss_mb"], 0),
                describe_target(target),
                verdict(meets(r, target)),
            ]
        )
    headers = [
        "accepted rows",
        "policy",
        "rows trained",
        "files read",
        "read s",
        "fit+eval s",
        "train() s",
        "RSS before MB",
        "peak RSS MB",
        "target",
        "met",
    ]
    return "\n".join(
        [
            f"## Retrain stage alone (no servers; files of {RETRAIN_FILE_ROWS:,} rows; "
            "one process per row)",
            "",
            render_table(headers, rows, left=(0, 1, 9)),
            "",
        ]
    )


def report_errors(report: dict[str, Any]) -> dict[str, str]:
    """The parts (and bursts) that failed, with their errors."""
    errors = {}
    for key, part in report["parts"].items():
        if isinstance(part, dict) and "error" in part:
            errors[key] = part["error"]
        elif isinstance(part, list):
            for item in part:
                if "error" in item:
                    errors[f"{key} of {item['files']}"] = item["error"]
    return errors


def render_report(report: dict[str, Any]) -> str:
    """Every table of the report, as markdown."""
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    load = ", ".join(f"{x:.2f}" for x in m["load_average_at_start"])
    out = [
        "# Arrivals benchmark",
        "",
        f"Machine: {m['nproc']} cores, {m['memory_gib']} GiB, {m['cpu_model']}; "
        f"Python {m['python']}; {versions}; git {m['git']}; load average at start {load}. "
        f"Started {report['started_at']}, took {report.get('duration_seconds', 0) / 60:.1f} min"
        f" ({report.get('outcome', '?')}).",
        "",
    ]
    polling = _polling_parts(report)
    out += [render_stages(key, part) for key, part in polling]
    if polling:
        out.append(render_polling_comparison(polling))
    if isinstance(window := report["parts"].get("window"), dict) and "error" not in window:
        out.append(render_window(window))
    if isinstance(bursts := report["parts"].get("burst"), list):
        out.append(render_bursts(bursts))
    if isinstance(retrain := report["parts"].get("retrain"), list):
        out.append(render_retrain(retrain))
    if isinstance(decisions := report["parts"].get("decisions"), dict) and "error" not in decisions:
        from arrivals.bench_decisions import render_decisions

        out.append(render_decisions(decisions))
    errors = report_errors(report)
    if errors:
        out += ["## Parts that failed", "", *(f"- {k}: {v}" for k, v in errors.items()), ""]
    return "\n".join(out)


def write_results(report: dict[str, Any]) -> Path:
    """bench/results/latest.json plus a timestamped copy; returns the copy."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    copy = RESULTS_DIR / f"bench-{stamp}.json"
    atomic_write_json(copy, report)
    atomic_write_json(RESULTS_DIR / "latest.json", report)
    return copy


# -- running it --------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m arrivals.bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default: {','.join(PARTS)})",
    )
    parser.add_argument("--drops", type=int, default=20, help="timed single drops (default 20)")
    parser.add_argument(
        "--window-pairs", type=int, default=10, help="pairs of drops of `window` (default 10)"
    )
    parser.add_argument(
        "--default-polling-drops",
        type=int,
        default=8,
        help="timed single drops with the 10 s worker poll (default 8)",
    )
    parser.add_argument(
        "--bursts",
        default=",".join(str(b) for b in BURST_SIZES),
        help="burst sizes, in order (default 100,500)",
    )
    parser.add_argument(
        "--burst-timeout", type=float, default=300, help="seconds before a burst file counts lost"
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=300,
        help="seconds to wait after a burst for the automation to act on every event",
    )
    parser.add_argument(
        "--drop-timeout", type=float, default=180, help="seconds one drop may take to be terminal"
    )
    parser.add_argument(
        "--stage-outside",
        action="store_true",
        help="write each drop outside the inbox and rename it in (a person's `mv`), "
        "instead of under a temp name inside the inbox (what `arrivals drop` does)",
    )
    parser.add_argument(
        "--decision-pairs",
        type=int,
        default=200,
        help="pairs of equal models in the decisions part (default 200)",
    )
    parser.add_argument("--seed", type=int, default=4, help="seed of the synthetic rows")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes and logs")
    parser.add_argument("--retrain-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    args.parts = parts
    try:
        args.bursts = [int(b) for b in args.bursts.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--bursts {args.bursts!r}: expected comma-separated numbers")
    if args.drops < 1 or args.default_polling_drops < 1:
        parser.error("--drops and --default-polling-drops must be at least 1")
    return args


# What a part may fail with and still let the others run (a concurrent edit can break an import).
PART_ERRORS = (
    BenchError,
    httpx.HTTPError,
    subprocess.SubprocessError,
    OSError,
    KeyError,
    ImportError,
)


def _guarded(name: str, report: dict[str, Any], measure: Callable[[], Any]) -> None:
    """Run one part; a failure is recorded in the report and the other parts still run."""
    started = time.monotonic()
    try:
        result = measure()
    except PART_ERRORS as error:
        log.exception("Part %s failed", name)
        result = {"error": f"{type(error).__name__}: {error}"}
    if result is not None:
        report["parts"][name] = result
    report["part_seconds"][name] = time.monotonic() - started


def measure_bursts(
    stack: BenchStack,
    sizes: Sequence[int],
    rng: np.random.Generator,
    *,
    timeout: float,
    settle_timeout: float,
) -> list[dict[str, Any]]:
    """Each burst in turn; one that fails is recorded and the next still runs."""
    results = []
    for size in sizes:
        try:
            results.append(
                measure_burst(stack, size, rng, timeout=timeout, settle_timeout=settle_timeout)
            )
        except PART_ERRORS as error:
            log.exception("Burst of %d failed", size)
            results.append({"files": size, "error": f"{type(error).__name__}: {error}"})
    return results


def _measure_all(args: argparse.Namespace, root: Path, report: dict[str, Any]) -> None:
    rng = np.random.default_rng(args.seed)

    def drops(stack: BenchStack, count: int) -> dict[str, Any]:
        return measure_drops(
            stack, count, rng, outside=args.stage_outside, timeout=args.drop_timeout
        )

    if {"latency", "window", "burst"} & set(args.parts):

        def first_stack() -> None:
            with running_stack(root / "poll-params", {}) as stack:
                if "latency" in args.parts:
                    _guarded(
                        "latency",
                        report,
                        lambda: drops(stack, args.drops),
                    )
                if "window" in args.parts:
                    _guarded(
                        "window",
                        report,
                        lambda: measure_window_drops(
                            stack, args.window_pairs, rng, timeout=args.drop_timeout
                        ),
                    )
                if "burst" in args.parts:
                    _guarded(
                        "burst",
                        report,
                        lambda: measure_bursts(
                            stack,
                            args.bursts,
                            rng,
                            timeout=args.burst_timeout,
                            settle_timeout=args.settle_timeout,
                        ),
                    )

        _guarded("stack (latency, window, burst)", report, first_stack)
    if "default-polling" in args.parts:

        def default_polling() -> dict[str, Any]:
            overrides = {"services": {"worker_query_seconds": DEFAULT_POLL_SECONDS}}
            with running_stack(root / "poll-default", overrides) as stack:
                return drops(stack, args.default_polling_drops)

        _guarded("default-polling", report, default_polling)
    if "retrain" in args.parts:
        _guarded("retrain", report, lambda: measure_retrain(root / "retrain", rng, 1800))
    if "decisions" in args.parts:
        from arrivals.bench_decisions import measure_decisions

        _guarded(
            "decisions",
            report,
            lambda: measure_decisions(load_settings(), args.decision_pairs, args.seed),
        )


def run(args: argparse.Namespace) -> int:
    """Run the chosen parts, print the tables, write the JSON; 1 if a part failed."""
    root = Path(tempfile.mkdtemp(prefix="arrivals-bench-"))
    began = time.monotonic()
    report: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "options": {k: v for k, v in vars(args).items() if k != "retrain_child"},
        "targets": {
            "latency": LATENCY_TARGETS,
            "burst": {str(k): v for k, v in BURST_TARGETS.items()},
            "retrain": {f"{r}/{p}": v for (r, p), v in RETRAIN_TARGETS.items()},
        },
        "parts": {},
        "part_seconds": {},
    }
    log.info("Benchmark parts %s; temporary homes under %s", ", ".join(args.parts), root)
    outcome = "failed"
    try:
        _measure_all(args, root, report)
        outcome = "done"
    except KeyboardInterrupt:
        outcome = "interrupted"
        log.warning("Interrupted: the stacks are stopped; writing what was measured")
    finally:
        # Whatever happened, what was measured is written and shown.
        report["outcome"] = outcome
        report["duration_seconds"] = time.monotonic() - began
        report["machine"]["load_average_at_end"] = os.getloadavg()
        copy = write_results(report)
        sys.stdout.write(render_report(report) + "\n")
        sys.stdout.flush()
        log.info("Results: %s (and %s)", RESULTS_DIR / "latest.json", copy.name)
        failed = outcome != "done" or bool(report_errors(report))
        if failed or args.keep:
            log.info("Temporary homes and logs kept in %s", root)
        else:
            shutil.rmtree(root, ignore_errors=True)
        log.info("Total runtime %.1f min", report["duration_seconds"] / 60)
    return 130 if outcome == "interrupted" else (1 if failed else 0)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m arrivals.bench`: parse the options, run, exit 0 only if every part ran."""
    setup_logging()
    args = parse_args(argv)
    if args.retrain_child:
        result = retrain_child(json.loads(args.retrain_child))
        sys.stdout.write(json.dumps(result) + "\n")
        return 0
    # SIGTERM unwinds like Ctrl-C, through every `finally`: the stacks are always stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
