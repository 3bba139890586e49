"""What every bench home shares: its params.yaml, and the error of a measurement.

Light on purpose: the retrain child imports it, and its peak RSS must be the stage's own.
"""

from __future__ import annotations

from pathlib import Path

from arrivals.harness import write_params

PARKED_CRON = "0 0 1 1 *"  # the producer's clock must not drop files while we measure


class BenchError(RuntimeError):
    """A measurement could not be taken (a run nobody claimed, a setup that went wrong)."""


def write_bench_config(path: Path, overrides: dict) -> Path:
    """The project's params.yaml, producer clock parked, source absolute, ledger in the home."""
    parked = {
        "automation": {"cron_schedule": PARKED_CRON},
        "paths": {"ledger_url": None},  # never a shared database: this home's SQLite
    }
    return write_params(path, parked, overrides)
