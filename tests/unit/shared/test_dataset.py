"""The fixed holdout, the training pool and the per-row label rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.dataset import (
    compute_label,
    ensure_holdout,
    holdout_mask,
    read_source,
    row_keys,
    training_pool,
)
from shared.settings import HoldoutSettings, LabelRule, Settings


def _sorted_rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted(map(tuple, frame.astype(str).itertuples(index=False)))


@pytest.mark.parametrize(("n", "fraction"), [(244, 0.25), (100, 0.1), (7, 0.5), (1_000, 0.33)])
def test_holdout_mask_size_and_determinism(n: int, fraction: float) -> None:
    holdout = HoldoutSettings(fraction=fraction, seed=7)
    mask = holdout_mask(n, holdout)
    assert mask.dtype == bool and mask.shape == (n,)
    assert int(mask.sum()) == round(n * fraction)
    assert np.array_equal(mask, holdout_mask(n, holdout))


def test_holdout_mask_depends_on_the_seed() -> None:
    a = holdout_mask(244, HoldoutSettings(fraction=0.25, seed=7))
    b = holdout_mask(244, HoldoutSettings(fraction=0.25, seed=8))
    assert not np.array_equal(a, b)


def test_read_source_keeps_declared_columns_in_order(settings: Settings) -> None:
    source = read_source(settings.dataset)
    assert list(source.columns) == list(settings.dataset.columns)
    assert len(source) == len(pd.read_csv(settings.dataset.source))


def test_pool_and_holdout_partition_the_source(settings: Settings, tmp_path: Path) -> None:
    source = read_source(settings.dataset)
    pool = training_pool(settings.dataset, settings.holdout)
    holdout = pd.read_csv(ensure_holdout(settings.dataset, settings.holdout, tmp_path / "h.csv"))
    assert len(holdout) == round(len(source) * settings.holdout.fraction)
    assert len(pool) + len(holdout) == len(source)
    assert list(pool.index) == list(range(len(pool)))
    assert _sorted_rows(pd.concat([pool, holdout])) == _sorted_rows(source)


def test_pool_and_holdout_are_disjoint(settings: Settings, tmp_path: Path) -> None:
    """With a source whose rows are all distinct, no row is in both parts."""
    rng = np.random.default_rng(0)
    n = 60
    unique = pd.DataFrame(
        {
            "total_bill": np.arange(1, n + 1) + 0.5,
            "tip": rng.uniform(0.5, 5, n).round(2),
            "sex": rng.choice(["Female", "Male"], n),
            "smoker": rng.choice(["No", "Yes"], n),
            "day": rng.choice(["Thur", "Fri", "Sat", "Sun"], n),
            "time": rng.choice(["Lunch", "Dinner"], n),
            "size": rng.integers(1, 6, n),
        }
    )
    path = tmp_path / "unique.csv"
    unique.to_csv(path, index=False)
    dataset = settings.dataset.model_copy(update={"source": path})
    pool = training_pool(dataset, settings.holdout)
    holdout = pd.read_csv(ensure_holdout(dataset, settings.holdout, tmp_path / "h.csv"))
    assert not set(pool["total_bill"]) & set(holdout["total_bill"])
    assert set(pool["total_bill"]) | set(holdout["total_bill"]) == set(unique["total_bill"])


def test_ensure_holdout_writes_once(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "holdout.csv"
    ensure_holdout(settings.dataset, settings.holdout, path)
    first = path.read_bytes()
    other_seed = settings.holdout.model_copy(update={"seed": 99})
    assert ensure_holdout(settings.dataset, other_seed, path) == path
    assert path.read_bytes() == first, "the holdout never moves once written"
    assert [p.name for p in tmp_path.iterdir()] == ["holdout.csv"]


def test_label_ratio_above() -> None:
    rule = LabelRule(
        name="generous", kind="ratio_above", numerator="tip", denominator="bill", threshold=0.2
    )
    frame = pd.DataFrame({"tip": [1.0, 2.0, 3.0, 0.0], "bill": [10.0, 10.0, 10.0, 5.0]})
    label = compute_label(frame, rule)
    assert label.name == "generous"
    assert label.tolist() == [0, 1, 1, 0]  # 0.1 below, 0.2 at the threshold, 0.3 above


def test_label_is_per_row_not_a_statistic() -> None:
    rule = LabelRule(kind="ratio_above", numerator="tip", denominator="bill", threshold=0.2)
    frame = pd.DataFrame({"tip": [1.0, 3.0], "bill": [10.0, 10.0]})
    alone = compute_label(frame.iloc[[0]], rule).tolist()
    with_more = compute_label(
        pd.concat([frame, pd.DataFrame({"tip": [9.0] * 50, "bill": [10.0] * 50})]), rule
    )
    assert alone == [0]
    assert with_more.tolist()[:2] == [0, 1]


def test_label_above() -> None:
    rule = LabelRule(name="big_party", kind="above", column="size", threshold=4)
    label = compute_label(pd.DataFrame({"size": [1, 3, 4, 6]}), rule)
    assert label.name == "big_party"
    assert label.tolist() == [0, 0, 1, 1]


def test_label_column_is_the_class() -> None:
    rule = LabelRule(name="weekday", kind="column", column="day")
    label = compute_label(pd.DataFrame({"day": ["Sun", "Sat", "Thur"]}), rule)
    assert label.name == "weekday"
    assert label.tolist() == ["Sun", "Sat", "Thur"]


def test_row_keys_identify_identical_rows() -> None:
    frame = pd.DataFrame({"a": [1.5, 1.5, 2.5], "b": ["x", "x", "x"], "c": [0, 0, 0]})
    keys = row_keys(frame, ["a", "b"])
    assert keys.iloc[0] == keys.iloc[1]
    assert keys.iloc[0] != keys.iloc[2]
