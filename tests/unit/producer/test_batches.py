"""The producer's batches: which rows, in which file, written how."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from consumer.validate import validate_csv
from producer import batches
from producer.batches import (
    next_batch_number,
    read_state,
    remember,
    select_batch,
    write_batch,
)
from shared.dataset import training_pool
from shared.fs import is_candidate
from shared.settings import Settings


@pytest.fixture
def pool(settings: Settings) -> pd.DataFrame:
    """The training pool with a row id, so rows can be told apart even when values repeat."""
    base = training_pool(settings.dataset, settings.holdout)
    return base.assign(row_id=range(len(base)))


def _select(settings: Settings, pool: pd.DataFrame, number: int):
    auto = settings.automation
    return select_batch(
        pool,
        number,
        batch_size=auto.batch_size,
        seed=auto.batch_seed,
        dataset_name=settings.dataset.name,
    )


def test_the_configured_batches_are_full_disjoint_and_from_the_pool(
    settings: Settings, pool: pd.DataFrame
) -> None:
    auto = settings.automation
    seen: set[int] = set()
    for number in range(1, auto.max_batches + 1):
        batch = _select(settings, pool, number)
        assert batch is not None
        assert batch.number == number
        assert len(batch.rows) == auto.batch_size
        ids = set(batch.rows["row_id"])
        assert len(ids) == auto.batch_size
        assert not ids & seen, f"batch {number} repeats rows"
        seen |= ids
        # Each row is the pool's row, unchanged.
        expected = pool.set_index("row_id").loc[batch.rows["row_id"]].reset_index()
        pd.testing.assert_frame_equal(batch.rows[expected.columns], expected)


def test_batches_are_deterministic(settings: Settings, pool: pd.DataFrame) -> None:
    for number in (1, 5, 8):
        first = _select(settings, pool, number)
        second = _select(settings, pool, number)
        assert first.file_name == second.file_name
        pd.testing.assert_frame_equal(first.rows, second.rows)


def test_another_seed_makes_other_batches(settings: Settings, pool: pd.DataFrame) -> None:
    one = select_batch(pool, 1, batch_size=22, seed=1, dataset_name="tips")
    two = select_batch(pool, 1, batch_size=22, seed=2, dataset_name="tips")
    assert set(one.rows["row_id"]) != set(two.rows["row_id"])


def test_batches_cover_the_pool_then_stop(settings: Settings, pool: pd.DataFrame) -> None:
    size = settings.automation.batch_size
    available = math.ceil(len(pool) / size)
    covered: list[int] = []
    for number in range(1, available + 1):
        batch = _select(settings, pool, number)
        assert batch is not None and 1 <= len(batch.rows) <= size
        covered.extend(batch.rows["row_id"])
    assert sorted(covered) == list(range(len(pool)))
    assert _select(settings, pool, available + 1) is None
    assert _select(settings, pool, available + 50) is None


def test_batch_numbers_start_at_one(settings: Settings, pool: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        _select(settings, pool, 0)


def test_batch_file_name() -> None:
    assert batches.batch_file_name("tips", 3) == "tips_batch_003.csv"
    assert is_candidate(batches.batch_file_name("tips", 12))


def test_next_batch_number_from_state(tmp_path: Path, settings: Settings, pool) -> None:
    state_path = tmp_path / "producer_state.json"
    assert read_state(state_path) == {"produced": []}
    assert next_batch_number(read_state(state_path)) == 1
    assert next_batch_number({}) == 1
    assert next_batch_number({"produced": [{"batch": 2}, {"batch": 5}, {"batch": 3}]}) == 6
    for number in (1, 2):
        batch = _select(settings, pool, number)
        remember(state_path, batch, tmp_path / batch.file_name)
    state = read_state(state_path)
    assert [entry["batch"] for entry in state["produced"]] == [1, 2]
    assert state["produced"][0]["rows"] == settings.automation.batch_size
    assert next_batch_number(state) == 3


def test_write_batch_round_trips_and_is_atomic(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = training_pool(settings.dataset, settings.holdout)
    batch = _select(settings, pool, 1)
    inbox = settings.dirs.inbox
    inbox.mkdir(parents=True)

    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst):
        # The final name must not exist before the rename: no reader sees half a file.
        assert not Path(dst).exists()
        renames.append((os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr("shared.fs.os.replace", spy)
    path = write_batch(batch, inbox)
    assert path == inbox / batch.file_name
    assert len(renames) == 1
    temp = Path(renames[0][0])
    assert temp.parent == inbox and not is_candidate(temp.name)
    assert [p.name for p in inbox.iterdir()] == [batch.file_name]

    pd.testing.assert_frame_equal(pd.read_csv(path), batch.rows)
    validated = validate_csv(path, settings.dataset).frame  # what the consumer will read
    assert len(validated) == len(batch.rows)
    assert validated["total_bill"].tolist() == batch.rows["total_bill"].tolist()
