"""Synthetic files: rows resampled from the training pool, and placing them in an inbox."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from shared.settings import ColumnSpec

DROP_ROWS = 20


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
