"""Parts `latency` and `default-polling`: single drops, every stage timed by its own record."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from arrivals.harness import RunningStack, wait_for
from bench.homes import BenchError
from bench.stacks import (
    POLL_SECONDS,
    epoch,
    event_received,
    run_breakdown,
    scratch_dir,
    state_time,
    task_spans,
    wait_idle,
)
from bench.stats import meets, summarize
from bench.synthetic import DROP_ROWS, float_columns_of, new_content, place_file
from bench.tables import describe_target, fmt, render_table, verdict
from shared.dataset import training_pool
from shared.events import FILE_ARRIVED, file_resource_id
from shared.ledger import FileRecord

log = logging.getLogger("bench.latency")

DEFAULT_POLL_SECONDS = 10.0  # Prefect's own default for PREFECT_WORKER_QUERY_SECONDS
CRON_REFERENCE_SECONDS = 120.0  # the producer's default cron: a batch every two minutes
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


def drop_timestamps(stack: RunningStack, record: FileRecord, run: dict) -> dict[str, float | None]:
    """Every stage of one file, as each system recorded it (epoch seconds)."""
    received = wait_for(
        lambda: event_received(stack, FILE_ARRIVED, file_resource_id(record.sha256)),
        30,
        f"the arrival event of {record.name} in Prefect's event feed",
        every=POLL_SECONDS,
    )
    version = record.model_version
    return {
        "detected": record.detected_at,
        "event_received": received,
        "run_created": epoch(run["created"]),
        "run_pending": state_time(stack, run["id"], "PENDING"),
        "running": epoch(run["start_time"]),
        "version_registered": stack.version_created(version) if version else None,
        "champion_decided": record.finished_at,
        "run_completed": epoch(run["end_time"]),
    }


def measure_drops(
    stack: RunningStack, drops: int, rng: np.random.Generator, *, outside: bool, timeout: float
) -> dict[str, Any]:
    """One cold drop, then `drops` spaced drops; each waits for its run to end."""
    s = stack.settings
    pool = training_pool(s.dataset, s.holdout)
    floats = float_columns_of(s.dataset.columns)
    staging = scratch_dir(stack, "staging") if outside else None
    seen: set[str] = set()
    measured = []
    for index in range(drops + 1):
        wait_idle(stack)
        data, sha = new_content(pool, DROP_ROWS, rng, floats, seen)
        name = f"drop-{index:03d}.csv"
        complete = place_file(data, s.dirs.inbox, name, staging)
        record = stack.wait_terminal(name, timeout, every=POLL_SECONDS)
        if record.claimed_by is None:
            raise BenchError(f"{name} is {record.state} but no run claimed it")
        run = stack.wait_run_ended(record.claimed_by, timeout, every=POLL_SECONDS)
        stamps = drop_timestamps(stack, record, run)
        offsets = {k: (v - complete if v is not None else None) for k, v in stamps.items()}
        inside = (
            run_breakdown(
                stamps["running"], stamps["run_completed"], task_spans(stack, record.claimed_by)
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
    wait = (
        CRON_REFERENCE_SECONDS  # a file waits U(0, wait) for the next tick before any work starts
    )
    rows.append(
        [
            f"cron every {wait:g} s (reference: wait for the tick)",
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


def polling_parts(report: dict[str, Any]) -> list[tuple[str, dict]]:
    """The single-drop parts of a report that were measured: (part name, part)."""
    return [
        (key, part)
        for key in ("latency", "default-polling")
        if isinstance(part := report["parts"].get(key), dict) and "error" not in part
    ]
