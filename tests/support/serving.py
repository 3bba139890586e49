"""A dataset whose every next file makes a clearly better model, and a client that keeps
asking the served model for predictions while that happens (the serve e2e test).

File k carries signal in its first k features only: the other features are shuffled within
the file, so a model trained on it (training.policy window: the newest file's rows) learns k
of the 4 features. On the pinned 2,000-row holdout, where all 4 carry signal, ROC AUC rises
from about 0.66 (k=1) to 0.95 (k=4): each step wins its paired bootstrap comfortably, so each
file is a promotion. A file with shuffled labels has no signal: a challenger that loses.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml

from arrivals.harness import write_params

FEATURES = ["x1", "x2", "x3", "x4"]
FILE_ROWS = 300
HOLDOUT_ROWS = 2000


def signal_rows(rows: int, informative: int, rng: np.random.Generator) -> pd.DataFrame:
    """Rows whose label depends on all 4 features; all but the first `informative` shuffled."""
    x = rng.normal(size=(rows, len(FEATURES)))
    score = x.sum(axis=1) + rng.normal(scale=0.5, size=rows)
    frame = pd.DataFrame(x.round(4), columns=FEATURES)
    frame["outcome"] = np.where(score > 0, "yes", "no")
    for name in FEATURES[informative:]:
        frame[name] = rng.permutation(frame[name].to_numpy())
    return frame


def write_signal_config(folder: Path, **overrides: dict) -> Path:
    """params.yaml for the signal dataset (pinned holdout, window training, no producer)."""
    folder.mkdir(parents=True, exist_ok=True)
    holdout = folder / "holdout.csv"
    signal_rows(HOLDOUT_ROWS, len(FEATURES), np.random.default_rng(1)).to_csv(holdout, index=False)
    config = write_params(
        folder / "params.yaml",
        {
            "holdout": {"file": str(holdout)},
            "automation": {"producer": False},
            "training": {"policy": "window", "max_rows": FILE_ROWS},
            "sensor": {"rescan_seconds": 2},
            **overrides,
        },
    )
    params = yaml.safe_load(config.read_text(encoding="utf-8"))
    params["dataset"] = {  # replaced whole: merged, the tips columns would stay
        "name": "signal",
        "columns": {
            **{name: {"type": "float"} for name in FEATURES},
            "outcome": {"type": "category", "values": ["no", "yes"]},
        },
        "label": {"name": "outcome", "kind": "column", "column": "outcome"},
        "features": {"numeric": FEATURES, "categorical": []},
    }
    params["model"] = {"name": "arrivals-signal", "kind": "logistic_regression"}
    config.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return config


@dataclass
class Answer:
    at: float  # time.monotonic() when the answer came
    status: int
    version: str | None
    rows: int


@dataclass
class ClientLoop:
    """Requests one after another (JSON and CSV in turn) until stopped; every answer kept."""

    url: str
    rows: pd.DataFrame
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _send(self, client: httpx.Client, turn: int) -> httpx.Response:
        chunk = self.rows.iloc[turn % len(self.rows) :][: 1 + turn % 5]
        if turn % 2:
            return client.post(
                f"{self.url}/invocations",
                content=chunk.to_csv(index=False).encode(),
                headers={"content-type": "text/csv"},
            )
        return client.post(
            f"{self.url}/invocations",
            json={"dataframe_split": chunk.to_dict(orient="split", index=False)},
        )

    def run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            turn = 0
            while not self._stop.is_set():
                try:
                    response = self._send(client, turn)
                except httpx.HTTPError as error:
                    self.errors.append(f"{type(error).__name__}: {error}")
                else:
                    rows = len(response.json().get("predictions", []))
                    version = response.headers.get("x-model-version")
                    answer = Answer(time.monotonic(), response.status_code, version, rows)
                    self.answers.append(answer)
                turn += 1
                time.sleep(0.005)

    def __enter__(self) -> ClientLoop:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    @property
    def failed(self) -> list[Answer]:
        return [answer for answer in self.answers if answer.status != 200]
