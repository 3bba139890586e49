"""`arrivals predict FILE`: the served champion scores the rows (in chunks of serve.max_rows),
the local champion when the serve is down or has none; bad rows write nothing.

The serve is the real app (serving.app) under uvicorn on a free port, over a fake registry.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from arrivals.harness import free_ports
from arrivals.predict import cmd_predict
from consumer.training import build_pipeline, split_xy
from consumer.validate import validate_csv
from serving.app import ServeState
from serving.models import ServedModels
from serving.shadow import ShadowTally
from shared.settings import ModelSettings, Settings, load_settings
from tests.support.data import BAD_AT, HEADER, SOURCE_CSV, TIPS, rows_with
from tests.support.fake_serving import FakeSource, running_app

INPUT_HEADER = f"id,{HEADER}"  # an extra column, kept as read: "007" stays "007"


@pytest.fixture(scope="module")
def pipeline() -> Any:
    """A small logistic regression on the tips source, built as the retrain builds it."""
    model = ModelSettings(name="arrivals-tips", kind="logistic_regression", params={})
    x, y = split_xy(validate_csv(SOURCE_CSV, TIPS).frame, TIPS)
    return build_pipeline(model, TIPS).fit(x, y)


class Recording:
    """A pipeline that notes how many rows each call scored; `after` runs after each call."""

    def __init__(self, pipeline: Any, after: Callable[[], None] | None = None) -> None:
        self.pipeline = pipeline
        self.calls: list[int] = []
        self.after = after

    def predict(self, features: Any) -> np.ndarray:
        self.calls.append(len(features))
        predictions = self.pipeline.predict(features)
        if self.after is not None:
            self.after()
        return predictions


@contextmanager
def serving(settings: Settings, source: FakeSource, max_rows: int | None = None) -> Iterator[Any]:
    """The serve's app on settings' serve port until the block ends; yields its models."""
    models = ServedModels(source, shadow=False)
    models.refresh()
    state = ServeState(
        model_name=settings.model.name,
        dataset=settings.dataset,
        max_rows=max_rows or settings.serve.max_rows,
        models=models,
        tally=ShadowTally(),
    )
    with running_app(state, settings.services.serve_port):
        yield models


@pytest.fixture
def make_settings(
    write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Settings on a tmp home with a free serve port (nothing listens until `serving`)."""

    def make(max_rows: int = 100_000) -> Settings:
        monkeypatch.setenv("ARRIVALS_SERVE_PORT", str(free_ports()))
        path = write_config(lambda params: params.setdefault("serve", {}).update(max_rows=max_rows))
        return load_settings(path)

    return make


def input_file(folder: Path, rows: list[str], name: str = "new.csv") -> Path:
    path = folder / name
    lines = [INPUT_HEADER, *(f"{i:03d},{row}" for i, row in enumerate(rows))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good_rows() -> list[str]:
    return rows_with({0: {"total_bill": "10.50"}})  # "10.50", not "10.5", comes back


def expected(pipeline: Any, path: Path) -> list[str]:
    """The pipeline's predictions for the file, typed by the training's own reader."""
    x, _ = split_xy(validate_csv(path, TIPS).frame, TIPS)
    return [str(value) for value in pipeline.predict(x).tolist()]


def read_output(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, rows


def predict(path: Path, settings: Settings, output: Path | None = None) -> int:
    args = argparse.Namespace(file=str(path), output=None if output is None else str(output))
    return cmd_predict(settings, args)


def write_local_champion(settings: Settings, pipeline: Any, version: str) -> Path:
    models = settings.dirs.models
    models.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, models / "champion.joblib")
    about = {"model": settings.model.name, "version": version, "metrics": {}}
    (models / "champion.json").write_text(json.dumps(about), encoding="utf-8")
    return models / "champion.joblib"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="arrivals")
    return caplog


def test_served_rows_come_back_with_their_prediction_and_the_served_version(
    tmp_path: Path, make_settings: Callable[..., Settings], pipeline: Any, logs: Any
) -> None:
    settings = make_settings()
    source = input_file(tmp_path, good_rows())
    recording = Recording(pipeline)
    with serving(settings, FakeSource({"3": recording}, champion="3")):
        assert predict(source, settings) == 0
    out = tmp_path / "new.predictions.csv"
    header, rows = read_output(out)
    assert header == [*INPUT_HEADER.split(","), "prediction", "model_version"]
    _, given = read_output(source)
    assert [row[:-2] for row in rows] == given, "every input cell as read, in order"
    assert rows[0][1] == "10.50" and rows[0][0] == "000"
    assert [row[-2] for row in rows] == expected(pipeline, source)
    assert {row[-1] for row in rows} == {"3"}
    assert recording.calls == [20]
    url = settings.serve_url
    assert f"Scored 20 rows with arrivals-tips v3 (served at {url}) -> {out}" in logs.text


def test_rows_go_in_chunks_of_max_rows_and_come_back_in_order(
    tmp_path: Path, make_settings: Callable[..., Settings], pipeline: Any
) -> None:
    settings = make_settings(max_rows=3)
    source = input_file(tmp_path, good_rows()[:10])
    recording = Recording(pipeline)
    with serving(settings, FakeSource({"3": recording}, champion="3")):
        assert predict(source, settings) == 0
    assert recording.calls == [3, 3, 3, 1], "four requests of at most serve.max_rows rows"
    _, rows = read_output(tmp_path / "new.predictions.csv")
    assert [row[0] for row in rows] == [f"{i:03d}" for i in range(10)]
    assert [row[-2] for row in rows] == expected(pipeline, source)


def test_a_chunk_answered_after_a_swap_keeps_its_own_version(
    tmp_path: Path, make_settings: Callable[..., Settings], pipeline: Any, logs: Any
) -> None:
    settings = make_settings(max_rows=4)
    source = input_file(tmp_path, good_rows()[:10])
    fake = FakeSource({}, champion="3")
    served: list[ServedModels] = []

    def promote_v4() -> None:  # after the first request: the alias moves, the serve swaps
        if fake.champion_version == "3":
            fake.champion_version = "4"
            served[0].refresh()

    fake.pipelines.update({"3": Recording(pipeline, after=promote_v4), "4": pipeline})
    with serving(settings, fake) as models:
        served.append(models)
        assert predict(source, settings) == 0
    _, rows = read_output(tmp_path / "new.predictions.csv")
    assert [row[-1] for row in rows] == ["3"] * 4 + ["4"] * 6
    assert "with arrivals-tips v3, v4 (served at" in logs.text


@pytest.mark.parametrize("serve", ["down", "without a champion"])
def test_the_local_champion_scores_when_the_serve_cannot(
    tmp_path: Path, make_settings: Callable[..., Settings], pipeline: Any, logs: Any, serve: str
) -> None:
    settings = make_settings(max_rows=7)
    source = input_file(tmp_path, good_rows())
    path = write_local_champion(settings, pipeline, version="5")
    if serve == "down":
        assert predict(source, settings) == 0
        why = "the serve did not answer (ConnectError)"
    else:
        with serving(settings, FakeSource({}, champion=None)):
            assert predict(source, settings) == 0
        why = "the serve has no champion yet"
    _, rows = read_output(tmp_path / "new.predictions.csv")
    _, given = read_output(source)
    assert [row[:-2] for row in rows] == given
    assert [row[-2] for row in rows] == expected(pipeline, source)
    assert {row[-1] for row in rows} == {"5"}
    assert f"v5 (loaded locally from {path}, {why})" in logs.text


@pytest.mark.parametrize("serve", ["down", "without a champion"])
def test_no_champion_anywhere_fails_and_writes_nothing(
    tmp_path: Path, make_settings: Callable[..., Settings], logs: Any, serve: str
) -> None:
    settings = make_settings()
    source = input_file(tmp_path, good_rows())
    if serve == "down":
        assert predict(source, settings) == 1
        assert "start the stack with `arrivals up --detach`" in logs.text
    else:
        with serving(settings, FakeSource({}, champion=None)):
            assert predict(source, settings) == 1
    assert "No champion to score with" in logs.text
    assert "drop a file (`arrivals drop FILE`)" in logs.text
    assert not (tmp_path / "new.predictions.csv").exists()


@pytest.mark.parametrize("where", ["served", "local"])
def test_bad_rows_fail_with_the_serves_message_and_write_nothing(
    tmp_path: Path, make_settings: Callable[..., Settings], pipeline: Any, logs: Any, where: str
) -> None:
    settings = make_settings()
    source = input_file(tmp_path, rows_with({BAD_AT: {"sex": "Robot"}}))
    if where == "served":
        with serving(settings, FakeSource({"3": pipeline}, champion="3")):
            assert predict(source, settings) == 1
        assert "the serve answered 400: 1 of 20 rows are bad: row 6:" in logs.text
    else:
        write_local_champion(settings, pipeline, version="5")
        assert predict(source, settings) == 1
        assert "1 of 20 rows are bad: row 6:" in logs.text
    assert "Robot" in logs.text
    assert [r.levelname for r in logs.records if r.levelno >= logging.ERROR] == ["ERROR"]
    assert not (tmp_path / "new.predictions.csv").exists()


def test_too_many_rows_for_the_serve_fail_with_its_message(
    tmp_path: Path, make_settings: Callable[..., Settings], pipeline: Any, logs: Any
) -> None:
    settings = make_settings(max_rows=10)  # this side sends 10; the serve takes 4
    source = input_file(tmp_path, good_rows()[:10])
    with serving(settings, FakeSource({"3": pipeline}, champion="3"), max_rows=4):
        assert predict(source, settings) == 1
    assert "the serve answered 413: 10 rows in one request; serve.max_rows is 4" in logs.text
    assert not (tmp_path / "new.predictions.csv").exists()


def test_the_input_file_is_never_the_output(
    tmp_path: Path, make_settings: Callable[..., Settings], logs: Any
) -> None:
    settings = make_settings()
    source = input_file(tmp_path, good_rows())
    before = source.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.csv").symlink_to(source)
    for output in (source, tmp_path / "sub" / ".." / source.name, tmp_path / "link.csv"):
        assert predict(source, settings, output=output) == 2
    assert source.read_bytes() == before
    assert "is the input file" in logs.text


def test_a_missing_file_is_a_usage_error_and_an_empty_one_fails(
    tmp_path: Path, make_settings: Callable[..., Settings], logs: Any
) -> None:
    settings = make_settings()
    assert predict(tmp_path / "absent.csv", settings) == 2
    assert "cannot read" in logs.text
    empty = tmp_path / "empty.csv"
    empty.write_text(INPUT_HEADER + "\n\n", encoding="utf-8")
    assert predict(empty, settings) == 1
    assert "has no rows to score" in logs.text
    assert not (tmp_path / "empty.predictions.csv").exists()
