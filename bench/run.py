"""Running the chosen parts, each guarded, and writing what was measured whatever happens."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

# Everything the parent needs from the project is imported once, at start: other people edit
# the code while a long run goes on, and stopping the stacks must never depend on a later import.
from arrivals.harness import RunningStack
from bench.report import RESULTS_DIR, machine_info, render_report, report_errors, write_results
from bench.scenarios.burst import BURST_TARGETS, measure_bursts
from bench.scenarios.latency import DEFAULT_POLL_SECONDS, LATENCY_TARGETS, measure_drops
from bench.scenarios.retrain import RETRAIN_TARGETS, measure_retrain
from bench.scenarios.serve import SERVE_OVERRIDES, SERVE_TARGETS, measure_serve
from bench.scenarios.window import measure_window_drops
from bench.stacks import PART_ERRORS, running_stack
from shared.settings import load_settings

log = logging.getLogger("bench")


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


def _measure_all(args: argparse.Namespace, root: Path, report: dict[str, Any]) -> None:
    rng = np.random.default_rng(args.seed)

    def drops(stack: RunningStack, count: int) -> dict[str, Any]:
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
        # Imported only when the part runs: it loads scikit-learn and the judge.
        from bench.scenarios.decisions import measure_decisions

        _guarded(
            "decisions",
            report,
            lambda: measure_decisions(load_settings(), args.decision_pairs, args.seed),
        )
    if "serve" in args.parts:

        def serve() -> dict[str, Any]:
            with running_stack(root / "serve", SERVE_OVERRIDES) as stack:
                return measure_serve(
                    stack,
                    root / "serve",
                    seconds=args.serve_seconds,
                    promotions=args.serve_promotions,
                    restarts=args.serve_restarts,
                )

        _guarded("serve", report, serve)


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
            "serve": SERVE_TARGETS,
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
