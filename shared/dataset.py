"""The dataset as params.yaml describes it: the source, the fixed holdout, the label rule.

Pure pandas; switching to another tabular classification dataset is a params.yaml change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shared.fs import atomic_write_text
from shared.settings import DatasetSettings, HoldoutSettings, LabelRule


def read_source(dataset: DatasetSettings) -> pd.DataFrame:
    """The source table, declared columns only, in declaration order."""
    return pd.read_csv(dataset.source)[list(dataset.columns)]


def holdout_mask(n_rows: int, holdout: HoldoutSettings) -> np.ndarray:
    """Which source rows form the fixed holdout: a seeded choice, the same on every call."""
    rng = np.random.default_rng(holdout.seed)
    chosen = rng.permutation(n_rows)[: round(n_rows * holdout.fraction)]
    mask = np.zeros(n_rows, dtype=bool)
    mask[chosen] = True
    return mask


def ensure_holdout(dataset: DatasetSettings, holdout: HoldoutSettings, path: Path) -> Path:
    """Write the holdout once; later calls keep the file that exists (it never moves)."""
    if not path.exists():
        source = read_source(dataset)
        atomic_write_text(path, source[holdout_mask(len(source), holdout)].to_csv(index=False))
    return path


def training_pool(dataset: DatasetSettings, holdout: HoldoutSettings) -> pd.DataFrame:
    """The source rows outside the holdout, which the producer slices into batches."""
    source = read_source(dataset)
    return source[~holdout_mask(len(source), holdout)].reset_index(drop=True)


def compute_label(frame: pd.DataFrame, rule: LabelRule) -> pd.Series:
    """The label of each row, from that row alone (never from a statistic of the data)."""
    if rule.kind == "ratio_above":
        ratio = frame[rule.numerator] / frame[rule.denominator]
        return (ratio >= rule.threshold).astype(int).rename(rule.name)
    if rule.kind == "above":
        return (frame[rule.column] >= rule.threshold).astype(int).rename(rule.name)
    return frame[rule.column].astype(str).rename(rule.name)


def row_keys(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A hash per row over `columns`, to recognise holdout rows that reappear in a drop."""
    return pd.util.hash_pandas_object(frame[columns].astype(str), index=False)
