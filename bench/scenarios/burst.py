"""Part `burst`: many distinct files copied into the inbox by one `cp`."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from arrivals.harness import RunningStack, WaitTimedOut, wait_for
from bench.stacks import (
    PART_ERRORS,
    RETRAIN_FLOW,
    epoch,
    event_total,
    iso,
    scratch_dir,
    wait_idle,
)
from bench.stats import meets
from bench.synthetic import DROP_ROWS, float_columns_of, new_content
from bench.tables import describe_target, fmt, render_table, verdict
from shared.dataset import training_pool
from shared.events import RunStates
from shared.ledger import FileRecord, FileState

log = logging.getLogger("bench.burst")

BURST_SIZES = (100, 500)
BURST_TARGETS: dict[int, dict[str, float]] = {
    100: {"lost": 0, "duplicated": 0},
    500: {"all_terminal_seconds": 60.0, "trainings": 10, "lost": 0, "duplicated": 0},
}
TERMINAL_FILE_STATES = (FileState.TRAINED, FileState.REJECTED)


def duplicated_names(names: Sequence[str], files_by_version: dict[str, list[str]]) -> list[str]:
    """Names among `names` that more than one model version lists as its new files."""
    wanted = set(names)
    seen: dict[str, int] = {}
    for files in files_by_version.values():
        for name in set(files) & wanted:
            seen[name] = seen.get(name, 0) + 1
    return sorted(name for name, count in seen.items() if count > 1)


def version_files(stack: RunningStack) -> dict[str, list[str]]:
    """The new files of every version, from `<home>/metrics/version-N.json`."""
    found = {}
    for path in sorted(stack.settings.dirs.metrics.glob("version-*.json")):
        summary = json.loads(path.read_text(encoding="utf-8"))
        found[str(summary["version"])] = list(summary.get("files", []))
    return found


def automation_backlog(stack: RunningStack, since: float) -> int:
    """Automation firings since `since` whose run-deployment action has not run yet."""
    fired = event_total(stack, "prefect.automation.triggered", since)
    acted = event_total(stack, "prefect.automation.action.executed", since)
    return fired - acted - event_total(stack, "prefect.automation.action.failed", since)


def wait_settled(stack: RunningStack, since: float, timeout: float) -> bool:
    """Until every automation firing since `since` acted and no retrain run is active."""
    try:
        wait_for(
            lambda: (
                automation_backlog(stack, since) <= 0
                and stack.count_runs(RETRAIN_FLOW, RunStates.ACTIVE) == 0
            ),
            timeout,
            "the automation's run-deployment backlog to drain",
            every=1.0,
        )
    except WaitTimedOut as error:
        log.warning("%s", error)
        return False
    return True


def measure_burst(
    stack: RunningStack,
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
    staging = scratch_dir(stack, f"burst-{size}")
    seen: set[str] = {r.sha256 for r in stack.open_ledger.files()}
    paths, shas = [], set()
    for index in range(size):
        data, sha = new_content(pool, DROP_ROWS, rng, floats, seen)
        path = staging / f"burst{size}-{index:04d}.csv"
        path.write_bytes(data)
        paths.append(path)
        shas.add(sha)
    names = [p.name for p in paths]
    wait_idle(stack)
    log.info("Burst of %d: copying them into the inbox with one cp", size)
    started = time.time()
    subprocess.run(["cp", *map(str, paths), str(s.dirs.inbox)], check=True, timeout=300)
    copied = time.time()

    def files() -> dict[str, FileRecord]:
        return {r.sha256: r for r in stack.open_ledger.files() if r.sha256 in shas}

    def all_terminal() -> bool:
        found = files()
        return len(found) == size and all(r.state in TERMINAL_FILE_STATES for r in found.values())

    try:
        wait_for(all_terminal, timeout, f"all {size} files of the burst to be terminal", every=0.5)
    except WaitTimedOut as error:
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
    duplicated = duplicated_names(names, version_files(stack))
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
    runs_when_terminal = stack.count_runs(RETRAIN_FLOW, after=started - 1)
    log.info("Burst of %d: waiting for the automation to act on every arrival event", size)
    settled = wait_settled(stack, started - 1, timeout=settle_timeout)
    last_created = stack.prefect(
        "POST",
        "/flow_runs/filter",
        json={
            "flows": {"name": {"any_": [RETRAIN_FLOW]}},
            "flow_runs": {"expected_start_time": {"after_": iso(started - 1)}},
            "sort": "EXPECTED_START_TIME_DESC",
            "limit": 1,
        },
    ).json()
    runs = {r.claimed_by for r in terminal if r.claimed_by}
    run_seconds = []
    for run_id in sorted(runs):
        run = stack.flow_run(run_id)
        if run.get("start_time") and run.get("end_time"):
            run_seconds.append(epoch(run["end_time"]) - epoch(run["start_time"]))

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
            1 for r in terminal if r.state == FileState.TRAINED and not r.model_version
        ),
        "rejected": sum(1 for r in terminal if r.state == FileState.REJECTED),
        "lost": lost,
        "duplicated": len(duplicated),
        "duplicated_names": duplicated[:20],
        "runs_that_trained": len(runs),
        "run_seconds": run_seconds,
        "flow_runs_created_when_terminal": runs_when_terminal,
        "flow_runs_created": stack.count_runs(RETRAIN_FLOW, after=started - 1),
        "automation_settled": settled,
        "last_run_created_seconds": (
            epoch(last_created[0]["created"]) - started if last_created else None
        ),
        "automation_triggers": event_total(stack, "prefect.automation.triggered", started - 1),
        "flow_runs_completed": stack.count_runs(RETRAIN_FLOW, ["COMPLETED"], after=started - 1),
        "flow_runs_cancelled": stack.count_runs(RETRAIN_FLOW, ["CANCELLED"], after=started - 1),
    }
    return result


def measure_bursts(
    stack: RunningStack,
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
