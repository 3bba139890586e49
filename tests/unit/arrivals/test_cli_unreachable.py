"""With no stack running, a command that needs one exits non-zero with one line, no traceback.

The real `arrivals` executable, in a fresh home whose Prefect and MLflow ports nothing
listens on.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from arrivals.harness import BIN, free_ports
from shared.ledger import Ledger
from shared.settings import load_settings
from tests.support.ledger_files import file_in_state


@pytest.fixture
def closed_home(clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict:
    """The environment of a home with nothing running; it holds one trained file, a.csv."""
    monkeypatch.setenv("ARRIVALS_PREFECT_PORT", str(free_ports()))
    monkeypatch.setenv("ARRIVALS_MLFLOW_PORT", str(free_ports()))
    settings = load_settings()
    ledger = Ledger(settings.ledger_url)
    try:
        file_in_state(ledger, "a.csv", "trained")
    finally:
        ledger.close()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_API")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    return {"env": env, "api": settings.prefect_api_url, "ledger": settings.ledger_url}


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "arrivals"), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("retrain",),
        ("retract", "a.csv"),
        ("accept", "a.csv"),
        ("events",),
        ("drop", "--batch", "1"),
    ],
)
def test_one_line_no_traceback(closed_home: dict, args: tuple[str, ...]) -> None:
    result = run(closed_home["env"], *args)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 1, output
    assert "Traceback" not in output
    (line,) = output.splitlines()
    assert "Prefect" in line and closed_home["api"] in line and "arrivals up" in line, line


def test_retract_with_no_stack_leaves_the_file_trained(closed_home: dict) -> None:
    assert run(closed_home["env"], "retract", "a.csv").returncode == 1
    ledger = Ledger(closed_home["ledger"])
    try:
        record = ledger.find("a.csv")
    finally:
        ledger.close()
    assert record is not None and record.state == "trained"
