"""The serve's HTTP routes on a real uvicorn, over a fake registry: answers, errors, the hot
swap under concurrent requests, shadow scoring and the prediction log."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest

from arrivals.harness import free_ports, wait_for
from serving.app import ServeState
from serving.models import ServedModels
from serving.prediction_log import PredictionLog
from serving.shadow import ShadowTally
from tests.support.data import TIPS
from tests.support.fake_serving import FEATURE_ROW as ROW
from tests.support.fake_serving import ConstantModel, FakeSource, running_app

VERSIONS = {str(v): ConstantModel(str(v)) for v in range(1, 6)}


class Serve:
    """A running app and the handles a test turns: the registry and the served models."""

    def __init__(self, state: ServeState, source: FakeSource, url: str) -> None:
        self.state, self.source, self.url = state, source, url

    def post(self, rows: list[dict], **kwargs: Any) -> httpx.Response:
        return httpx.post(f"{self.url}/invocations", json={"dataframe_records": rows}, **kwargs)


@pytest.fixture
def serve(request) -> Iterator[Serve]:
    options = getattr(request, "param", {})
    source = FakeSource(VERSIONS, options.get("champion", "1"))
    source.newest_version = options.get("newest")
    state = ServeState(
        model_name="arrivals-tips",
        dataset=TIPS,
        max_rows=options.get("max_rows", 1000),
        models=ServedModels(source, shadow=options.get("shadow", False)),
        tally=ShadowTally(),
        prediction_log=options.get("log"),
    )
    state.models.refresh()
    port = free_ports()
    with running_app(state, port):
        yield Serve(state, source, f"http://127.0.0.1:{port}")


@pytest.mark.parametrize("serve", [{"champion": None}], indirect=True)
def test_before_a_champion_ping_and_invocations_say_503_and_version_says_none(serve) -> None:
    assert httpx.get(f"{serve.url}/ping").status_code == 503
    assert httpx.get(f"{serve.url}/health").status_code == 503
    response = serve.post([ROW])
    assert response.status_code == 503 and "no champion of arrivals-tips yet" in response.text
    assert httpx.get(f"{serve.url}/version").json()["version"] is None


def test_answers_name_the_version_that_made_them(serve) -> None:
    assert httpx.get(f"{serve.url}/ping").status_code == 200
    response = serve.post([ROW, ROW])
    assert response.status_code == 200
    assert response.json() == {"predictions": ["1", "1"]}
    assert response.headers["x-model-version"] == "1"
    assert response.headers["x-model-name"] == "arrivals-tips"
    csv = pd.DataFrame([ROW]).to_csv(index=False).encode()
    answer = httpx.post(
        f"{serve.url}/invocations", content=csv, headers={"content-type": "text/csv"}
    )
    assert answer.json() == {"predictions": ["1"]}
    version = httpx.get(f"{serve.url}/version").json()
    assert version["version"] == "1" and version["decision"] == "promoted"
    assert version["run_id"] == "run-1" and version["loaded_at"] and version["shadow"] is None


@pytest.mark.parametrize("serve", [{"max_rows": 2}], indirect=True)
def test_bad_requests_get_mlflows_error_shape_with_the_reason(serve) -> None:
    bad = serve.post([{**ROW, "size": "many"}])
    assert bad.status_code == 400
    assert bad.json() == {
        "error_code": "BAD_REQUEST",
        "message": "1 of 1 rows are bad: row 1: column size: 'many' is not a number",
    }
    assert serve.post([ROW] * 3).status_code == 413
    garbled = httpx.post(f"{serve.url}/invocations", content=b"{", headers={"content-type": ""})
    assert garbled.status_code == 400 and "not valid JSON" in garbled.json()["message"]


def test_no_request_fails_or_mixes_models_while_the_champion_moves(serve) -> None:
    """Requests from 4 threads while the champion is swapped 60 times: every answer is
    whole (all its rows from the version its header names), and none fails."""
    answers: list[tuple[int, str, list[str]]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                r = http.post(f"{serve.url}/invocations", json={"dataframe_records": [ROW] * 20})
                answers.append(
                    (r.status_code, r.headers.get("x-model-version"), r.json()["predictions"])
                )

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for i in range(60):
            serve.source.champion_version = str(1 + i % 5)
            serve.state.models.refresh()
            wait_for(lambda i=i: len(answers) > 3 * i, 10, "answers between swaps", every=0.001)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert len(answers) > 180
    assert all(status == 200 for status, _, _ in answers)
    assert all(predictions == [version] * 20 for _, version, predictions in answers)
    assert {version for _, version, _ in answers} == set(VERSIONS)


@pytest.mark.parametrize("serve", [{"champion": "3", "newest": "5", "shadow": True}], indirect=True)
def test_the_shadow_challenger_scores_after_the_answer_and_never_answers(serve) -> None:
    for _ in range(3):
        response = serve.post([ROW] * 4)
        assert response.json() == {"predictions": ["3"] * 4}
        assert response.headers["x-model-version"] == "3"
    shadow = wait_for(
        lambda: (s := httpx.get(f"{serve.url}/version").json()["shadow"]).get("rows") == 12 and s,
        10,
        "the shadow tally",
    )
    assert shadow == {
        "version": "5",
        "decision": "promoted",
        "champion": "3",
        "challenger": "5",
        "requests": 3,
        "rows": 12,
        "agreement": 0.0,  # a constant "5" never agrees with a constant "3"
    }


def test_every_answer_is_in_the_prediction_log(tmp_path) -> None:
    log = PredictionLog(tmp_path / "predictions", 64 * 1024)
    source = FakeSource(VERSIONS, "2")
    state = ServeState(
        "arrivals-tips", TIPS, 100, ServedModels(source, shadow=False), ShadowTally(), log
    )
    state.models.refresh()
    port = free_ports()
    with running_app(state, port):
        for size in (1, 3, 5):
            httpx.post(
                f"http://127.0.0.1:{port}/invocations",
                json={"dataframe_records": [{**ROW, "size": size}] * size},
            ).raise_for_status()
        httpx.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [{}]})
    log.close()
    logged = pd.concat([pd.read_parquet(path) for path in log.files()], ignore_index=True)
    assert logged["size"].tolist() == [1, 3, 3, 3, 5, 5, 5, 5, 5]
    assert set(logged["model_version"]) == {"2"} and set(logged["prediction"]) == {"2"}
    assert logged["request_id"].nunique() == 3, "one id per request; the bad one not logged"
