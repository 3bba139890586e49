"""The bench's stacks (fresh, the producer's clock parked) and what their records say.

Timestamps come from the records each system keeps (the ledger, Prefect, MLflow), not from
when the bench happened to look; task and flow names come from the flow's own objects.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prefect import Task

from arrivals.harness import RunningStack, WaitTimedOut, wait_for
from arrivals.stack import StackError
from bench.homes import BenchError, write_bench_config
from consumer import flows
from shared.events import RunStates

POLL_SECONDS = 0.25  # how often the bench looks; the measured times are the systems' own
RETRAIN_FLOW = flows.retrain.name
RETRAIN_TASKS = tuple(t for t in vars(flows).values() if isinstance(t, Task))


# What a part may fail with and still let the others run (a concurrent edit can break an import).
PART_ERRORS = (
    BenchError,
    WaitTimedOut,
    StackError,
    httpx.HTTPError,
    subprocess.SubprocessError,
    OSError,
    KeyError,
    ImportError,
)


@contextlib.contextmanager
def running_stack(folder: Path, overrides: dict) -> Iterator[RunningStack]:
    """A healthy fresh stack for the `with` block; `arrivals down` always runs after it."""
    stack = RunningStack.fresh(
        folder / "home", write_bench_config(folder / "params.yaml", overrides)
    )
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


def scratch_dir(stack: RunningStack, name: str) -> Path:
    """A new folder beside the stack's home, for files made before they are dropped."""
    folder = stack.settings.home.parent / name
    folder.mkdir(exist_ok=True)
    return folder


def wait_idle(stack: RunningStack, timeout: float = 300) -> None:
    """Until no retrain run is scheduled, pending or running."""
    wait_for(
        lambda: stack.count_runs(RETRAIN_FLOW, RunStates.ACTIVE) == 0,
        timeout,
        "retrain runs to end",
        every=POLL_SECONDS,
    )


def epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def task_label(run_name: str, tasks: Sequence[Task] = RETRAIN_TASKS) -> str:
    """The task of a task-run name: `train_model-1a2` -> train_model (Prefect's default
    `<task>-<suffix>`); any other name -> the one task that names its runs itself."""
    default = run_name.rsplit("-", 1)[0]
    if any(task.name == default for task in tasks):
        return default
    named_by_itself = [task.name for task in tasks if task.task_run_name is not None]
    return named_by_itself[0] if len(named_by_itself) == 1 else default


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


def task_spans(stack: RunningStack, run_id: str) -> list[tuple[str, float, float]]:
    """(task, start, end) of every finished task run of a flow run."""
    body = {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}
    return [
        (task_label(t["name"]), epoch(t["start_time"]), epoch(t["end_time"]))
        for t in stack.prefect("POST", "/task_runs/filter", json=body).json()
        if t.get("start_time") and t.get("end_time")
    ]


def state_time(stack: RunningStack, run_id: str, state_type: str) -> float | None:
    """When the run first entered `state_type`, by Prefect's state history."""
    states = stack.prefect("GET", "/flow_run_states/", params={"flow_run_id": run_id}).json()
    times = [epoch(s["timestamp"]) for s in states if s["type"] == state_type]
    return min(times) if times else None


def event_received(stack: RunningStack, name: str, resource_id: str) -> float | None:
    """When Prefect first received event `name` about `resource_id`; None if it has none."""
    return min((epoch(e["received"]) for e in stack.events(name, resource_id)), default=None)


def event_total(stack: RunningStack, name: str, since: float) -> int:
    """How many events `name` Prefect received that occurred after `since` (epoch seconds)."""
    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": iso(since)}}, "limit": 1}
    return int(stack.prefect("POST", "/events/filter", json=body).json()["total"])
