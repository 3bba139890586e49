"""`arrivals serve` on a real stack: predictions follow every promotion with no failed request.

The story, in order: a first file makes a champion the serve answers with; under a steady
client loop, three better files are promoted one after another and a retraction moves the
champion back, and `/version` follows each move within 2 s while no request fails; a losing
challenger is scored in the shadow; `arrivals predict` writes one prediction per row, from
the serve and (the serve stopped) from the local champion; the prediction log holds what
was answered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest

from arrivals.harness import RunningStack, wait_for
from tests.support.serving import FEATURES, ClientLoop, signal_rows, write_signal_config
from tests.support.stack import stack_for

pytestmark = pytest.mark.e2e

ANSWERED: dict[str, int] = {}  # rows answered by earlier tests: the prediction log has them
FOLLOW_SECONDS = 2.0  # the bound: /version shows a new champion this soon
SERVE = {
    "shadow": True,
    "log_predictions": True,
    # Far longer than the test waits: a swap within 2 s can only come from the event.
    "poll_seconds": 300,
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> RunningStack:
    config = write_signal_config(tmp_path_factory.mktemp("signal"), serve=SERVE)
    with stack_for(SimpleNamespace(CONFIG_FILE=config), tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
def probe_rows() -> pd.DataFrame:
    return signal_rows(50, len(FEATURES), np.random.default_rng(99))


def served(stack: RunningStack) -> dict:
    return httpx.get(f"{stack.settings.serve_url}/version", timeout=5).json()


def drop(stack: RunningStack, frame: pd.DataFrame, folder: Path, name: str) -> None:
    path = folder / name
    frame.to_csv(path, index=False)
    subprocess.run(["cp", str(path), str(stack.settings.dirs.inbox)], check=True)
    record = stack.wait_terminal(name)
    assert record.state == "trained", record.reason


def alias_version(stack: RunningStack) -> str | None:
    response = stack.mlflow(
        "/registered-models/alias", name=stack.settings.model.name, alias="champion"
    )
    return response.json()["model_version"]["version"] if response.status_code == 200 else None


class Watch:
    """Polls the champion alias (MLflow) and the served version (/version) every 50 ms."""

    def __init__(self, stack: RunningStack) -> None:
        self.stack = stack
        self.alias: list[tuple[float, str | None]] = []
        self.serving: list[tuple[float, str | None]] = []
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            alias, version = alias_version(self.stack), served(self.stack)["version"]
            now = time.monotonic()
            for seen, value in ((self.alias, alias), (self.serving, version)):
                if not seen or seen[-1][1] != value:
                    seen.append((now, value))
            time.sleep(0.05)

    def __enter__(self) -> Watch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def lags(self) -> dict[str, float]:
        """Per alias move: seconds until /version showed that version."""
        return {
            version: next(t for t, v in self.serving if v == version and t >= moved) - moved
            for moved, version in self.alias[1:]
        }


def test_the_first_champion_is_served(stack, tmp_path, probe_rows) -> None:
    assert served(stack)["version"] is None
    assert httpx.get(f"{stack.settings.serve_url}/ping").status_code == 503
    drop(stack, signal_rows(300, 1, np.random.default_rng(1)), tmp_path, "signal-1.csv")
    wait_for(lambda: served(stack)["version"] == "1", 30, "v1 served")
    body = served(stack)
    assert body["model"] == stack.settings.model.name and body["decision"] == "promoted"
    response = httpx.post(
        f"{stack.settings.serve_url}/invocations",
        json={"dataframe_records": probe_rows.to_dict(orient="records")},
    )
    assert response.status_code == 200 and response.headers["x-model-version"] == "1"
    assert len(response.json()["predictions"]) == len(probe_rows)
    bad = httpx.post(
        f"{stack.settings.serve_url}/invocations",
        json={"dataframe_records": [{"x1": "big", "x2": 0, "x3": 0, "x4": 0}]},
    )
    assert bad.status_code == 400 and "row 1: column x1: 'big' is not a number" in bad.text


def test_version_follows_each_promotion_with_no_failed_request(stack, tmp_path, probe_rows):
    rng = np.random.default_rng(2)
    with Watch(stack) as watch, ClientLoop(stack.settings.serve_url, probe_rows) as loop:
        for k in (2, 3, 4):
            drop(stack, signal_rows(300, k, rng), tmp_path, f"signal-{k}.csv")
            wait_for(lambda k=k: served(stack)["version"] == str(k), 30, f"v{k} served")
        retract = stack.arrivals("retract", "signal-4.csv")
        back = retract.stdout + retract.stderr
        wait_for(lambda: alias_version(stack) not in ("4", None), 30, "champion moved back")
        back_to = wait_for(
            lambda: (v := served(stack)["version"]) == alias_version(stack) and v, 30, "rollback"
        )
        wait_for(lambda: loop.answers[-1].version == back_to, 30, "an answer after the rollback")
    moves = [version for _t, version in watch.alias]
    assert moves[:4] == ["1", "2", "3", "4"] and moves[4] not in ("4", None), (moves, back)
    lags = watch.lags()
    assert len(lags) >= 4 and max(lags.values()) <= FOLLOW_SECONDS, lags
    assert loop.errors == [] and loop.failed == [], (loop.errors, loop.failed[:5])
    versions = [answer.version for answer in loop.answers]
    assert len(versions) > 100
    assert {"2", "3", "4", moves[4]} <= set(versions)  # every champion answered requests
    ANSWERED["loop"] = sum(answer.rows for answer in loop.answers)


def test_a_losing_challenger_is_scored_in_the_shadow(stack, tmp_path, probe_rows) -> None:
    champion = served(stack)["version"]
    noise = signal_rows(300, 4, np.random.default_rng(3))
    noise["outcome"] = np.random.default_rng(4).permutation(noise["outcome"].to_numpy())
    path = tmp_path / "noise.csv"
    noise.to_csv(path, index=False)
    subprocess.run(["cp", str(path), str(stack.settings.dirs.inbox)], check=True)
    stack.wait_terminal("noise.csv")
    newest = max(int(v["version"]) for v in stack.model_versions())
    wait_for(lambda: (served(stack)["shadow"] or {}).get("version") == str(newest), 30, "shadow")
    for _ in range(20):
        httpx.post(
            f"{stack.settings.serve_url}/invocations",
            json={"dataframe_split": probe_rows.to_dict(orient="split", index=False)},
        ).raise_for_status()
    ANSWERED["shadow"] = 20 * len(probe_rows)
    shadow = wait_for(
        lambda: (s := served(stack)["shadow"]) and s.get("rows", 0) >= 20 * len(probe_rows) and s,
        30,
        "shadow tally",
    )
    assert served(stack)["version"] == champion  # answers stay the champion's
    assert 0.0 <= shadow["agreement"] <= 1.0 and shadow["champion"] == champion

    def logged() -> dict | None:
        run_id = stack.mlflow(
            "/model-versions/get", name=stack.settings.model.name, version=str(newest)
        ).json()["model_version"]["run_id"]
        metrics = stack.mlflow("/runs/get", run_id=run_id).json()["run"]["data"]["metrics"]
        found = {m["key"]: m["value"] for m in metrics}
        return found if found.get("shadow_rows", 0) >= 20 * len(probe_rows) else None

    metrics = wait_for(logged, 40, "shadow agreement on the challenger's MLflow run")
    assert metrics["shadow_agreement"] == pytest.approx(shadow["agreement"], abs=0.05)
    text = stack.arrivals("status").stdout
    assert f"SERVING     v{champion} since" in text and f"shadow v{newest} agrees on" in text


def test_predict_writes_one_prediction_per_row_served_or_local(stack, tmp_path) -> None:
    rows = signal_rows(57, 4, np.random.default_rng(5))
    source = tmp_path / "score-me.csv"
    rows.to_csv(source, index=False)
    version = served(stack)["version"]
    answered = httpx.post(
        f"{stack.settings.serve_url}/invocations",
        content=source.read_bytes(),
        headers={"content-type": "text/csv"},
    ).json()["predictions"]
    out = tmp_path / "scored.csv"
    result = stack.arrivals("predict", str(source), "-o", str(out))
    assert "served at" in result.stderr + result.stdout
    scored = pd.read_csv(out, keep_default_na=False)
    assert len(scored) == len(rows) and list(scored.columns[-2:]) == ["prediction", "model_version"]
    assert scored["prediction"].tolist() == answered
    assert set(scored["model_version"].astype(str)) == {version}
    assert scored[FEATURES].round(4).equals(rows[FEATURES].round(4))

    os.kill(stack.service_pid("serve"), signal.SIGTERM)  # graceful: the log is flushed
    wait_for(lambda: not stack.status()["services"]["serve"]["healthy"], 30, "serve stopped")
    local = tmp_path / "local.csv"
    result = stack.arrivals("predict", str(source), "-o", str(local))
    assert "loaded locally" in result.stderr + result.stdout
    assert pd.read_csv(local, keep_default_na=False)["prediction"].tolist() == answered


def test_the_prediction_log_holds_what_was_answered(stack) -> None:
    files = sorted(stack.settings.dirs.predictions.glob("*.parquet"))
    frames = [pd.read_parquet(path) for path in files]
    log = pd.concat(frames, ignore_index=True)
    columns = {*FEATURES, "prediction", "model_version", "predicted_at", "request_id"}
    assert columns <= set(log.columns)
    versions = {str(v["version"]) for v in stack.model_versions()}
    assert set(log["model_version"]) <= versions
    assert log.groupby("request_id")["model_version"].nunique().max() == 1
    # At least every row the client loop and the shadow test had answered (and a few more).
    assert len(log) >= ANSWERED["loop"] + ANSWERED["shadow"] > 1000


def test_a_restarted_serve_answers_with_the_champion_at_once(stack) -> None:
    stack.up()  # starts what is missing: the serve
    body = served(stack)
    assert body["version"] == alias_version(stack)
    assert httpx.get(f"{stack.settings.serve_url}/ping").status_code == 200
