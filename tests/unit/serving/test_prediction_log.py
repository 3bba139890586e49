"""The prediction log: round trip, rotation by size, atomic rewrites, restarts, threads."""

from __future__ import annotations

import io
import logging
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from serving import prediction_log
from serving.prediction_log import MIN_BYTES, PredictionLog
from tests.support.fakes import FakeClock

NEW_YEAR = 1_767_225_600.0  # 2026-01-01T00:00:00Z
LOG_COLUMNS = ["prediction", "model_version", "predicted_at", "request_id"]


def tips(rng: np.random.Generator, rows: int, start: int = 0) -> pd.DataFrame:
    """Feature rows like the server's: numbers, a category, strings; `row` numbers them."""
    return pd.DataFrame(
        {
            "row": np.arange(start, start + rows),
            "total_bill": rng.uniform(3, 50, rows).round(2),
            "sex": pd.Categorical(rng.choice(["Female", "Male"], rows), ["Female", "Male"]),
            "day": rng.choice(["Thur", "Fri", "Sat", "Sun"], rows).tolist(),
            # Random hex does not compress: the files grow as fast as the rotation test needs.
            "noise": [f"{value:016x}" for value in rng.integers(0, 2**62, rows)],
        }
    )


def read_all(log: PredictionLog) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(path) for path in log.files()], ignore_index=True)


def test_round_trip_keeps_rows_columns_dtypes_and_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    clock = FakeClock(NEW_YEAR + 0.25)
    log = PredictionLog(tmp_path / "predictions", MIN_BYTES, clock=clock)
    first, second = tips(rng, 3), tips(rng, 2, start=3)
    # An object column of mixed types, one missing: strings, and a null.
    second["day"] = pd.Series([7, None], dtype=object)
    log.append(first, np.array(["yes", "no", "yes"]), "7", "req-a")
    clock.advance(1.5)
    log.append(second, ["no", "no"], "8", "req-b")

    written = log.flush()

    assert written == tmp_path / "predictions" / "predictions-20260101T000000-000001.parquet"
    assert log.files() == [written]
    back = pd.read_parquet(written)
    assert list(back.columns) == [*first.columns, *LOG_COLUMNS]
    assert back["row"].tolist() == [0, 1, 2, 3, 4]
    assert back["total_bill"].tolist() == [*first["total_bill"], *second["total_bill"]]
    assert back["row"].dtype == np.int64 and back["total_bill"].dtype == np.float64
    assert isinstance(back["sex"].dtype, pd.CategoricalDtype)
    assert back["sex"].tolist() == [*first["sex"], *second["sex"]]
    assert back["day"].tolist()[:4] == [*first["day"], "7"] and pd.isna(back["day"][4])
    assert back["prediction"].tolist() == ["yes", "no", "yes", "no", "no"]
    assert back["model_version"].tolist() == ["7", "7", "7", "8", "8"]
    assert back["request_id"].tolist() == ["req-a"] * 3 + ["req-b"] * 2
    stamps = [pd.Timestamp(NEW_YEAR + 0.25, unit="s", tz="UTC")] * 3 + [
        pd.Timestamp(NEW_YEAR + 1.75, unit="s", tz="UTC")
    ] * 2
    assert back["predicted_at"].tolist() == stamps


def test_numeric_predictions_stay_numbers(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, MIN_BYTES)
    log.append(tips(np.random.default_rng(2), 2), np.array([0.25, 3.5]), "1", "r")
    back = pd.read_parquet(log.flush())
    assert back["prediction"].dtype == np.float64
    assert back["prediction"].tolist() == [0.25, 3.5]


def test_a_flush_with_nothing_new_writes_nothing(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, MIN_BYTES)
    assert log.flush() is None
    assert log.files() == []
    log.append(tips(np.random.default_rng(3), 4), ["a"] * 4, "1", "r")
    path = log.flush()
    assert path is not None
    before = path.stat()

    assert log.flush() is None
    log.close()

    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_files_rotate_by_size_without_losing_or_repeating_a_row(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    log = PredictionLog(tmp_path, MIN_BYTES)
    appended = 0
    for request in range(150):
        log.append(tips(rng, 40, start=appended), ["yes"] * 40, "3", f"req-{request}")
        appended += 40
        if request % 5 == 4:
            log.flush()
    log.close()

    files = log.files()
    assert len(files) >= 3
    assert [path.name for path in files] == sorted(path.name for path in files)
    assert all(path.stat().st_size >= MIN_BYTES for path in files[:-1])
    assert read_all(log)["row"].tolist() == list(range(appended))  # each once, in order
    # Only the current file's rows stay in memory: the final ones were released.
    assert sum(table.num_rows for table in log._tables) == len(pd.read_parquet(files[-1]))


def test_a_failed_write_leaves_the_previous_file_whole_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rng = np.random.default_rng(5)
    log = PredictionLog(tmp_path, MIN_BYTES)
    log.append(tips(rng, 5), ["a"] * 5, "1", "first")
    path = log.flush()
    assert path is not None
    complete = path.read_bytes()
    log.append(tips(rng, 5, start=5), ["b"] * 5, "1", "second")
    real_write = pq.write_table

    def dies_midway(table, where, **kwargs) -> None:
        """Writes half a Parquet file, then the disk is full."""
        buffer = io.BytesIO()
        real_write(table, buffer, **kwargs)
        where.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        where.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prediction_log.pq, "write_table", dies_midway)
    with caplog.at_level(logging.WARNING, logger=prediction_log.__name__):
        assert log.flush() is None
    assert "No space left on device" in caplog.text
    assert path.read_bytes() == complete
    assert pd.read_parquet(path)["request_id"].tolist() == ["first"] * 5
    assert os.listdir(tmp_path) == [path.name]

    monkeypatch.setattr(prediction_log.pq, "write_table", real_write)
    assert log.flush() == path  # the rows were kept for the next flush
    assert pd.read_parquet(path)["row"].tolist() == list(range(10))
    assert os.listdir(tmp_path) == [path.name]


def test_a_restart_continues_in_a_new_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    clock = FakeClock(NEW_YEAR)  # the same second for both: only the sequence tells them apart
    before = PredictionLog(tmp_path, MIN_BYTES, clock=clock)
    before.append(tips(rng, 3), ["a"] * 3, "1", "before")
    before.close()
    [first] = before.files()
    kept = first.read_bytes()
    stale = tmp_path / f".{first.name}.x1y2.tmp"  # a write a kill -9 interrupted
    stale.write_bytes(b"PAR1 half")

    after = PredictionLog(tmp_path, MIN_BYTES, clock=clock)
    after.append(tips(rng, 2), ["b"] * 2, "2", "after")
    after.close()

    assert [path.name for path in after.files()] == [
        "predictions-20260101T000000-000001.parquet",
        "predictions-20260101T000000-000002.parquet",
    ]
    assert first.read_bytes() == kept
    assert not stale.exists()
    assert read_all(after)["request_id"].tolist() == ["before"] * 3 + ["after"] * 2


def test_other_columns_start_a_new_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    log = PredictionLog(tmp_path, MIN_BYTES)
    log.append(tips(rng, 2), ["a"] * 2, "1", "old")
    log.flush()
    log.append(tips(rng, 3).drop(columns="noise"), ["b"] * 3, "1", "new")
    log.close()
    old, new = (pd.read_parquet(path) for path in log.files())
    assert (old["request_id"].tolist(), "noise" in old) == (["old"] * 2, True)
    assert (new["request_id"].tolist(), "noise" in new) == (["new"] * 3, False)


def test_max_bytes_below_the_floor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least"):
        PredictionLog(tmp_path, MIN_BYTES - 1)


def test_threads_append_while_another_flushes(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path, MIN_BYTES)
    threads, requests = 4, 150
    done = threading.Event()
    errors: list[BaseException] = []

    def appender(number: int) -> None:
        rng = np.random.default_rng(100 + number)
        try:
            for request in range(requests):
                rows = 10 + request % 3
                features = tips(rng, rows).assign(row=[number * 10_000 + request] * rows)
                log.append(features, ["x"] * rows, "1", f"t{number}-r{request}")
        except BaseException as error:
            errors.append(error)

    def flusher() -> None:
        try:
            while not done.is_set():
                if (path := log.flush()) is not None:  # a reader sees a whole file, always
                    pq.read_table(io.BytesIO(path.read_bytes()))
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=appender, args=(n,)) for n in range(threads)]
    flushing = threading.Thread(target=flusher)
    flushing.start()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    flushing.join()
    log.close()

    assert errors == []
    assert len(log.files()) >= 2  # the rotation ran while rows were arriving
    back = read_all(log)
    assert len(back) == threads * sum(10 + request % 3 for request in range(requests))
    sizes = back.groupby("request_id").size()
    assert len(sizes) == threads * requests
    assert all(size == 10 + int(rid.split("-r")[1]) % 3 for rid, size in sizes.items())
    for number in range(threads):  # each thread's requests appear in the order it made them
        mine = back["row"][back["row"] // 10_000 == number].drop_duplicates().tolist()
        assert mine == [number * 10_000 + request for request in range(requests)]
