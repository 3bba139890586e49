"""Part `retrain`: the retrain stage alone (no servers) as the accepted data grows.

Each case runs `consumer.retrain.train` once in a child process of its own (`python -m bench
--retrain-child SPEC`), so its peak RSS is the stage's; a `StageTotals` timer injected in the
retrain's context splits the time into reading and fitting.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import resource
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.homes import BenchError, write_bench_config
from bench.stats import meets
from bench.synthetic import float_columns_of, synthetic_rows, typed_frame
from bench.tables import describe_target, fmt, render_table, verdict
from shared.dataset import ensure_holdout, training_pool
from shared.fs import sha256_file
from shared.ledger import FileRecord, FileState, Ledger
from shared.settings import load_settings

log = logging.getLogger("bench.retrain")

RETRAIN_FILE_ROWS = 10_000
RETRAIN_NEW_ROWS = 1_000
RETRAIN_WINDOW = 200_000
RETRAIN_CASES = (  # accepted rows, training policy
    (10_000, "all"),
    (100_000, "all"),
    (100_000, "window"),
    (1_000_000, "window"),
)
RETRAIN_TARGETS: dict[tuple[int, str], dict[str, float]] = {
    (1_000_000, "window"): {"seconds": 60.0, "peak_rss_mb": 2048.0},
}
# The stages `consumer.retrain.train` times through `RetrainContext.timer`.
READ_STAGE, FIT_STAGE = "read", "fit_and_evaluate"


class StageTotals:
    """A `consumer.context.StageTimer` that adds up the seconds spent in each named stage."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started


class _NoEmitter:
    """train() emits nothing; the context still needs an emitter."""

    def emit(self, events) -> None:
        """Drop the events."""


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


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


def retrain_child(spec: dict[str, Any]) -> dict[str, Any]:
    """In a process of its own: time `consumer.retrain.train` once; peak RSS of this process."""
    # Imported ahead, as the warm engine does for a flow run: an import is not the stage's cost.
    import pyarrow.parquet  # noqa: F401  imported by the first read_parquet

    import consumer.training  # noqa: F401  scikit-learn, imported by the first fit
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
    timer = StageTotals()
    ctx = RetrainContext(
        settings=settings,
        ledger=ledger,
        emitter=_NoEmitter(),
        run_id="bench-retrain",
        logger=log,
        timer=timer,
    )
    new = ingesting.Accepted(record, settings.dirs.archive / record.name, frame)
    rss_before = _peak_rss_mb()
    try:
        started = time.perf_counter()
        trained = stages.train(ctx, [new])
        seconds = time.perf_counter() - started
    finally:
        ledger.close()
    return {
        "seconds": seconds,
        "read_seconds": timer.seconds[READ_STAGE],
        "fit_and_evaluate_seconds": timer.seconds[FIT_STAGE],
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
        state=FileState.CLAIMED,
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
            [sys.executable, "-m", "bench", "--retrain-child", json.dumps(spec)],
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
