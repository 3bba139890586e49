"""Which rows make batch N, and what the producer has already written. No Prefect here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from shared.fs import atomic_write_json, atomic_write_text, read_json


@dataclass(frozen=True)
class Batch:
    number: int
    file_name: str
    rows: pd.DataFrame


def batch_file_name(dataset_name: str, number: int) -> str:
    return f"{dataset_name}_batch_{number:03d}.csv"


def select_batch(
    pool: pd.DataFrame, number: int, *, batch_size: int, seed: int, dataset_name: str
) -> Batch | None:
    """Batch `number` (1-based): a fixed slice of the seeded shuffle of the pool.

    None when the pool has no rows left for that number.
    """
    if number < 1:
        raise ValueError(f"batch numbers start at 1, got {number}")
    order = np.random.default_rng(seed).permutation(len(pool))
    chosen = order[(number - 1) * batch_size : number * batch_size]
    if len(chosen) == 0:
        return None
    rows = pool.iloc[np.sort(chosen)].reset_index(drop=True)
    return Batch(number, batch_file_name(dataset_name, number), rows)


def next_batch_number(state: dict) -> int:
    produced = [entry["batch"] for entry in state.get("produced", [])]
    return max(produced, default=0) + 1


def read_state(path: Path) -> dict:
    return read_json(path, {"produced": []})


def write_batch(batch: Batch, inbox: Path) -> Path:
    """Write the batch into the inbox atomically (temp name, then rename)."""
    target = inbox / batch.file_name
    atomic_write_text(target, batch.rows.to_csv(index=False))
    return target


def remember(state_path: Path, batch: Batch, path: Path) -> None:
    state = read_state(state_path)
    state["produced"].append(
        {
            "batch": batch.number,
            "file": batch.file_name,
            "path": str(path),
            "rows": len(batch.rows),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    atomic_write_json(state_path, state)
