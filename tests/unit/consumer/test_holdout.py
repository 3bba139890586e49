"""The holdout's three modes, the row hash that routes arrivals, and that it never leaks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from consumer.context import RetrainContext
from consumer.holdout import (
    ARRIVALS,
    FILE,
    SOURCE,
    HoldoutError,
    holdout_mode,
    holdout_share,
    load_holdout,
    prepare_holdout,
    split_arrival,
)
from consumer.ingest import accepted_copy, ingest, load_accepted
from shared.ledger import Ledger
from shared.settings import PROJECT_ROOT, Settings, load_settings
from tests.support.data import SOURCE_CSV
from tests.support.fakes import FakeEmitter

COLUMNS = list(pd.read_csv(SOURCE_CSV, nrows=0).columns)


@pytest.fixture
def no_source(write_config: Callable[..., Path]) -> Settings:
    """The shipped config without dataset.source: the holdout comes from arrivals."""
    settings = load_settings(write_config(lambda p: p["dataset"].pop("source")))
    settings.dirs.ensure()
    return settings


@pytest.fixture
def ledger(no_source: Settings) -> Iterator[Ledger]:
    ledger = Ledger(no_source.ledger_url)
    yield ledger
    ledger.close()


def tips(rows: slice) -> pd.DataFrame:
    return pd.read_csv(SOURCE_CSV)[COLUMNS].iloc[rows].reset_index(drop=True)


def drop_and_claim(settings: Settings, ledger: Ledger, name: str, frame: pd.DataFrame):
    """Put a CSV in the inbox, record and announce it, and claim it for run-1."""
    path = settings.dirs.inbox / name
    path.write_text(frame.to_csv(index=False), encoding="utf-8")
    data = path.read_bytes()
    arrival = ledger.record_arrival(
        name=name,
        path=str(path),
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        detected_via="scan",
    )
    ledger.mark_announced(arrival.id)
    (record,) = [r for r in ledger.claim_pending("run-1", ttl_seconds=60) if r.name == name]
    return record


def ctx_for(settings: Settings, ledger: Ledger) -> RetrainContext:
    return RetrainContext(settings, ledger, FakeEmitter(), run_id="run-1")


def row_set(frame: pd.DataFrame) -> set[tuple]:
    return set(frame[COLUMNS].astype(str).itertuples(index=False, name=None))


# -- the row hash -------------------------------------------------------------------------
def test_the_share_is_about_the_fraction_and_depends_on_the_seed() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=4000), "k": rng.choice(["a", "b"], 4000)})
    share = holdout_share(frame, ["x", "k"], 0.25, seed=7)
    assert share.dtype == bool and len(share) == len(frame)
    assert 0.22 < share.mean() < 0.28
    assert not np.array_equal(share, holdout_share(frame, ["x", "k"], 0.25, seed=8))
    assert np.array_equal(share, holdout_share(frame, ["x", "k"], 0.25, seed=7))


def test_the_share_of_a_row_depends_on_its_content_only() -> None:
    frame = tips(slice(0, 200))
    share = holdout_share(frame, COLUMNS, 0.25, seed=7)
    shuffled = frame.sample(frac=1.0, random_state=3)
    again = holdout_share(shuffled, COLUMNS, 0.25, seed=7)
    assert np.array_equal(again, share[shuffled.index.to_numpy()]), "same row, same route"
    extra = frame.assign(comment="ignored")  # columns outside the hash change nothing
    assert np.array_equal(holdout_share(extra, COLUMNS, 0.25, seed=7), share)


def test_the_share_does_not_depend_on_how_a_number_column_was_read() -> None:
    from shared.settings import ColumnSpec

    specs = {"size": ColumnSpec(type="int"), "k": ColumnSpec(type="category")}
    as_int = pd.DataFrame({"size": [1, 2, 3, 4] * 50, "k": ["a", "b"] * 100})
    # A missing value elsewhere in a file makes pandas read the column as float.
    as_float = as_int.assign(size=as_int["size"].astype("float64"))
    assert np.array_equal(
        holdout_share(as_int, ["size", "k"], 0.5, 7, specs),
        holdout_share(as_float, ["size", "k"], 0.5, 7, specs),
    )


def test_missing_values_hash_alike_and_apart_from_text() -> None:
    frame = pd.DataFrame({"k": [None, np.nan, pd.NA, "None", "nan"] * 40, "n": range(200)})
    share = holdout_share(frame, ["k"], 0.5, seed=1)
    assert share[0] == share[1] == share[2], "every spelling of missing is one value"
    routes = {
        bool(holdout_share(frame.iloc[[i]], ["k"], 0.5, seed=s)[0])
        for i in (0, 3)
        for s in range(30)
    }
    assert routes == {True, False}


SCRIPT = """
import sys
import pandas as pd
from consumer.holdout import holdout_share
frame = pd.read_csv(sys.argv[1])
share = holdout_share(frame, list(frame.columns), 0.25, seed=7)
print("".join("1" if s else "0" for s in share))
"""


def test_the_share_is_the_same_in_another_process_and_pinned(tmp_path: Path) -> None:
    frame = tips(slice(0, 40))
    csv = tmp_path / "rows.csv"
    frame.to_csv(csv, index=False)
    here = "".join("1" if s else "0" for s in holdout_share(frame, COLUMNS, 0.25, seed=7))
    outputs = set()
    for hash_seed in ("0", "12345"):  # str hashing differs between these processes
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(csv)],
            capture_output=True,
            text=True,
            check=True,
            cwd=PROJECT_ROOT,
            env=env,
        )
        outputs.add(done.stdout.strip())
    assert outputs == {here}
    # Pinned: a change to the hash would silently move rows between holdout and training
    # in every existing home. Change this only with a migration of data/holdout/.
    assert here == "0100000000000000000000110000100000000000"


# -- modes --------------------------------------------------------------------------------
def test_the_mode_follows_the_config(
    settings: Settings, no_source: Settings, write_config, tmp_path
) -> None:
    assert holdout_mode(settings) == SOURCE
    assert holdout_mode(no_source) == ARRIVALS
    pinned = tmp_path / "config" / "mine.csv"
    pinned.parent.mkdir(exist_ok=True)
    tips(slice(0, 30)).to_csv(pinned, index=False)
    config = write_config(lambda p: p["holdout"].update(file="mine.csv"))
    assert holdout_mode(load_settings(config)) == FILE


def test_a_pinned_holdout_file_is_validated_and_described(write_config, tmp_path) -> None:
    pinned = tmp_path / "config" / "mine.csv"
    pinned.parent.mkdir(exist_ok=True)
    tips(slice(0, 30)).to_csv(pinned, index=False)
    settings = load_settings(write_config(lambda p: p["holdout"].update(file="mine.csv")))
    holdout = load_holdout(settings)
    assert holdout.rows == 30 and holdout.groups is None
    assert holdout.description == "30 rows of the pinned holdout file mine.csv"
    pd.testing.assert_frame_equal(
        holdout.frame, tips(slice(0, 30)), check_dtype=False, check_like=True
    )
    prepare_holdout(settings)  # validates: no error
    assert not settings.dirs.holdout.exists(), "nothing is cut from the source"

    pinned.write_text("total_bill;tip\n1;2\n", encoding="utf-8")
    with pytest.raises(HoldoutError, match=r"holdout.file .*mine.csv: file uses semicolons"):
        load_holdout(settings)
    with pytest.raises(HoldoutError):
        prepare_holdout(settings)


def test_the_source_holdout_is_cut_once_as_before(settings: Settings) -> None:
    settings.dirs.ensure()
    prepare_holdout(settings)
    holdout = load_holdout(settings)
    assert settings.dirs.holdout.exists()
    assert holdout.groups is None and holdout.rows == round(244 * settings.holdout.fraction)
    assert holdout.description == f"{holdout.rows} fixed holdout rows cut from the source"


# -- from arrivals ------------------------------------------------------------------------
def test_split_arrival_stores_the_holdout_rows_and_returns_the_rest(no_source: Settings) -> None:
    frame = tips(slice(0, 120))
    train = split_arrival(no_source, "ab" * 32, frame)
    stored = pd.read_parquet(no_source.dirs.holdout_rows / f"{'ab' * 32}.parquet")
    assert len(train) + len(stored) == len(frame)
    assert 10 < len(stored) < 50
    assert row_set(train).isdisjoint(row_set(stored))
    assert row_set(train) | row_set(stored) == row_set(frame)


def test_with_a_source_nothing_is_split(settings: Settings) -> None:
    settings.dirs.ensure()
    frame = tips(slice(0, 50))
    assert split_arrival(settings, "cd" * 32, frame) is frame
    assert list(settings.dirs.holdout_rows.iterdir()) == []


def test_ingest_trains_on_none_of_the_rows_it_routes_to_the_holdout(
    no_source: Settings, ledger: Ledger
) -> None:
    record = drop_and_claim(no_source, ledger, "first.csv", tips(slice(0, 120)))
    ctx = ctx_for(no_source, ledger)
    accepted = ingest(ctx, record)
    assert accepted is not None
    copy = pd.read_parquet(accepted_copy(ctx, record.sha256))
    held = pd.read_parquet(no_source.dirs.holdout_rows / f"{record.sha256}.parquet")
    pd.testing.assert_frame_equal(copy, accepted.frame, check_dtype=False)
    assert len(copy) + len(held) == 120 and len(held) > 0
    assert row_set(copy).isdisjoint(row_set(held))

    # The first round's holdout is this round's files' holdout rows.
    holdout = load_holdout(no_source, ledger, [record.sha256])
    assert holdout.rows == len(held)
    assert set(holdout.groups) == {record.sha256}
    assert row_set(holdout.frame).isdisjoint(row_set(accepted.frame))
    assert holdout.description == f"{len(held)} rows routed from 1 arriving file"


def test_the_holdout_holds_trained_files_only_and_grows(
    no_source: Settings, ledger: Ledger
) -> None:
    ctx = ctx_for(no_source, ledger)
    parts = {"a.csv": slice(0, 80), "b.csv": slice(80, 160), "c.csv": slice(160, 244)}
    records = {}
    for name, rows in parts.items():
        records[name] = drop_and_claim(no_source, ledger, name, tips(rows))
        assert ingest(ctx, records[name]) is not None
    assert load_holdout(no_source, ledger).rows == 0, "nothing is trained yet"
    ledger.mark_trained(
        {records["a.csv"].sha256: 1, records["b.csv"].sha256: 1}, run_id="run-1", version="1"
    )
    ledger.mark_rejected(records["c.csv"].sha256, run_id="run-1", reason="bad", path="/q")
    holdout = load_holdout(no_source, ledger)
    assert set(holdout.groups) == {records["a.csv"].sha256, records["b.csv"].sha256}
    assert holdout.description == f"{holdout.rows} rows routed from 2 arriving files"
    training = pd.concat([load_accepted(ctx, records[n]) for n in ("a.csv", "b.csv")])
    assert row_set(holdout.frame).isdisjoint(row_set(training))

    ledger.retract(records["a.csv"].sha256, "bad data")
    after = load_holdout(no_source, ledger)
    assert set(after.groups) == {records["b.csv"].sha256}
    assert len(after.groups) == after.rows


def test_an_accepted_file_read_again_from_its_csv_keeps_its_holdout_rows_out(
    no_source: Settings, ledger: Ledger
) -> None:
    record = drop_and_claim(no_source, ledger, "again.csv", tips(slice(0, 120)))
    ctx = ctx_for(no_source, ledger)
    accepted = ingest(ctx, record)
    accepted_copy(ctx, record.sha256).unlink()  # a home from before Parquet copies
    stored = ledger.get(record.sha256)
    again = load_accepted(ctx, stored)
    pd.testing.assert_frame_equal(again, accepted.frame, check_dtype=False)


def test_the_arrivals_holdout_needs_the_ledger(no_source: Settings) -> None:
    with pytest.raises(ValueError, match="needs the ledger"):
        load_holdout(no_source)
