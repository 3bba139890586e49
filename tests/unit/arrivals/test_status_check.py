"""`arrivals status --check`: one line, exit 1 when a service is down or a file waited too long."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from arrivals.cli import MAX_WAIT_SECONDS, main
from arrivals.status import check_status
from shared.ledger import Ledger
from shared.settings import Settings
from tests.support.healthy_stack import SERVICES


def snapshot(down: tuple[str, ...] = (), pending: int = 0, age: float | None = None) -> dict:
    """The parts of a status object the check reads."""
    return {
        "services": {
            name: {"healthy": name not in down, "pid": None if name in down else 100 + i}
            for i, name in enumerate(SERVICES)
        },
        "files": {"pending": pending, "trained": 3, "rejected": 0},
        "oldest_pending_age_seconds": age,
    }


def test_all_healthy_and_nothing_pending_passes() -> None:
    assert check_status(snapshot(), 600) == (True, "OK: 5 services healthy, nothing pending")


def test_a_file_waiting_within_the_limit_passes() -> None:
    healthy, line = check_status(snapshot(pending=2, age=600.0), 600)
    assert healthy, "exactly at the limit is still fine"
    assert line == "OK: 5 services healthy, 2 pending, oldest 10 min 00 s"


def test_a_down_service_fails_and_is_named() -> None:
    healthy, line = check_status(snapshot(down=("worker", "sensor")), 600)
    assert not healthy
    assert line.startswith("FAIL: down: worker, sensor (")
    assert "\n" not in line


def test_a_file_waiting_too_long_fails_with_its_age_and_the_limit() -> None:
    healthy, line = check_status(snapshot(pending=3, age=601.0), 600)
    assert not healthy
    assert line.startswith("FAIL: a file has waited 10 min 01 s to be trained, over --max-wait")
    assert "3 pending" in line
    assert check_status(snapshot(pending=3, age=601.0), 900)[0], "a higher limit passes"


def test_both_problems_are_on_one_line() -> None:
    healthy, line = check_status(snapshot(down=("prefect",), pending=1, age=3_600.0), 60)
    assert not healthy
    assert "down: prefect" in line and "waited 1 h 00 min" in line
    assert len(line.splitlines()) == 1


# -- the command, over a real ledger and a stack whose health is faked ---------------------------
def arrive_at(settings: Settings, name: str, detected_at: float) -> None:
    """A pending file in the home's ledger, detected at `detected_at` (epoch seconds)."""
    ledger = Ledger(settings.ledger_url, clock=lambda: detected_at)
    try:
        ledger.record_arrival(
            name=name,
            path=f"/inbox/{name}",
            size=1,
            sha256=hashlib.sha256(name.encode()).hexdigest(),
            detected_via="push",
        )
    finally:
        ledger.close()


def test_cli_check_passes_on_a_healthy_stack(settings: Settings, healthy, capsys) -> None:
    arrive_at(settings, "fresh.csv", time.time() - 5)
    assert main(["status", "--check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 5 services healthy, 1 pending, oldest ")
    assert len(out.splitlines()) == 1


def test_cli_check_fails_when_a_file_waited_over_max_wait(
    settings: Settings, healthy, capsys
) -> None:
    arrive_at(settings, "stuck.csv", time.time() - MAX_WAIT_SECONDS - 60)
    assert main(["status", "--check"]) == 1
    assert capsys.readouterr().out.startswith("FAIL: a file has waited 11 min")
    assert main(["status", "--check", "--max-wait", "3600"]) == 0
    capsys.readouterr()
    assert main(["status", "--check", "--json", "--max-wait", "60"]) == 1
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert printed["check"]["healthy"] is False
    assert printed["check"]["message"].startswith("FAIL: a file has waited")
    assert printed["files"]["pending"] == 1


def test_cli_check_fails_with_the_stack_down(settings: Settings, capsys) -> None:
    assert main(["status", "--check"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL: down: prefect, mlflow")
    assert main(["status"]) == 0, "without --check, status reports and succeeds"


def test_max_wait_must_not_be_negative(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["status", "--check", "--max-wait", "-1"])
    assert exit_.value.code == 2
    assert "-1 is negative" in capsys.readouterr().err
