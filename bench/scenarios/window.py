"""Part `window`: a file that lands while the automation's trigger ignores arrivals.

Pairs of drops, the second placed the moment the first run has judged its version: only
the run that took the first file can take it in time (else it waits for the sensor's sweep).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from arrivals.harness import RunningStack, wait_for
from bench.stacks import POLL_SECONDS, task_spans, wait_idle
from bench.stats import summarize
from bench.synthetic import DROP_ROWS, float_columns_of, new_content, place_file
from bench.tables import fmt, render_table
from consumer import flows
from shared.dataset import training_pool
from shared.events import FILE_ARRIVED, file_resource_id

log = logging.getLogger("bench.window")

QUICK_POLL_SECONDS = 0.05  # the second file must land right after the first run judged
JUDGED_TASK = flows.register_and_judge.name  # the last task of a round


def measure_window_drops(
    stack: RunningStack, pairs: int, rng: np.random.Generator, *, timeout: float
) -> dict[str, Any]:
    """Pairs of drops, the second placed the moment the first run has judged (see above)."""
    s = stack.settings
    pool = training_pool(s.dataset, s.holdout)
    floats = float_columns_of(s.dataset.columns)
    seen: set[str] = set()
    measured = []
    for index in range(pairs):
        wait_idle(stack)
        data, first_sha = new_content(pool, DROP_ROWS, rng, floats, seen)
        place_file(data, s.dirs.inbox, f"window-{index:03d}-first.csv")
        run_id = wait_for(
            lambda sha=first_sha: (r := stack.open_ledger.get(sha)) and r.claimed_by,
            timeout,
            f"window pair {index}: a run to claim the first file",
            every=QUICK_POLL_SECONDS,
        )
        wait_for(
            lambda run=run_id: any(t == JUDGED_TASK for t, *_ in task_spans(stack, run)),
            timeout,
            f"window pair {index}: the first run to judge its version",
            every=QUICK_POLL_SECONDS,
        )
        decided = stack.open_ledger.get(first_sha).finished_at
        data, sha = new_content(pool, DROP_ROWS, rng, floats, seen)
        name = f"window-{index:03d}-second.csv"
        complete = place_file(data, s.dirs.inbox, name)
        record = stack.wait_terminal(name, timeout, every=POLL_SECONDS)
        # Prefect persists events in batches: wait until the first one is there.
        announced = len(
            wait_for(
                lambda sha=sha: stack.events(FILE_ARRIVED, file_resource_id(sha)),
                30,
                f"the arrival event of {name} in Prefect's event feed",
                every=POLL_SECONDS,
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
