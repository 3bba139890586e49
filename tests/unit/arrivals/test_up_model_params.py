"""`arrivals up` with model.params its kind refuses: one line, exit 2, no service started."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ARRIVALS = Path(sys.executable).with_name("arrivals")  # the venv's console script


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _up(config: Path, home: Path) -> Iterator[tuple[subprocess.CompletedProcess[str], float]]:
    """`arrivals up --detach` on its own ports; whatever a regression starts is stopped."""
    env = {
        **os.environ,
        "ARRIVALS_HOME": str(home),
        "ARRIVALS_CONFIG": str(config),
        "ARRIVALS_PREFECT_PORT": str(_free_port()),
        "ARRIVALS_MLFLOW_PORT": str(_free_port()),
    }
    started = time.monotonic()
    try:
        result = subprocess.run(
            [str(ARRIVALS), "up", "--detach"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        yield result, time.monotonic() - started
    finally:
        if any(home.glob("run/*.pid")):
            subprocess.run(
                [str(ARRIVALS), "down"], env=env, capture_output=True, timeout=120, check=False
            )


@pytest.mark.parametrize(
    ("params", "named", "limit"),
    [
        pytest.param(
            {"n_estimators": 200, "max_depth": 6, "n_jobs": 2},
            "model.params.n_estimators: not a parameter of LogisticRegression",
            10.0,
            id="forest-params",  # refused by load_settings, before scikit-learn is imported
        ),
        pytest.param(
            {"C": "high"},
            "model.params.C: must be a float in the range (0.0, inf]. Got 'high' instead.",
            None,  # imports scikit-learn: 3 s on an idle 2-core machine, 20+ s on a busy one
            id="bad-value",  # refused by scikit-learn's own check in `up`
        ),
    ],
)
def test_up_refuses_params_of_another_kind_in_one_line(
    write_config: Callable[..., Path],
    tmp_path: Path,
    params: dict[str, Any],
    named: str,
    limit: float | None,
) -> None:
    def change(config: dict[str, Any]) -> None:
        config["model"]["kind"] = "logistic_regression"
        config["model"]["params"] = params

    config = write_config(change)
    home = tmp_path / "up-home"
    with _up(config, home) as (result, elapsed):
        assert result.returncode == 2, result.stderr
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        assert len(lines) == 1, lines
        assert lines[0].endswith(f"{config.resolve()}: {named}"), lines[0]
        assert " ERROR " in lines[0]
        assert limit is None or elapsed < limit, elapsed
        # Starting creates the home's folders (logs, data, ledger) and a pid file per service;
        # up's own lock file in run/ is all that may exist.
        made = sorted(str(path.relative_to(home)) for path in home.rglob("*"))
        assert set(made) <= {"run", "run/up.lock"}, made
