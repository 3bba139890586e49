"""Roles on two hosts: one runs Prefect and MLflow, the other the engine, worker and sensor.

On one machine two homes stand in for the two hosts. The second reaches the first's servers
by another name (services.prefect_host / mlflow_host: localhost, where the first listens on
127.0.0.1), and both see one data folder and one ledger, as two hosts would share an NFS
mount and a database (docs/scaling.md, "Two hosts").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from arrivals.harness import RunningStack, stack_environ, stop_by_pidfiles, wait_for, write_params
from shared.dataset import training_pool
from shared.ledger import FileState
from shared.settings import load_settings

pytestmark = pytest.mark.e2e

COMMON = {
    "automation": {"cron_schedule": "0 0 1 1 *"},  # no producer batch lands in between
    "sensor": {"rescan_seconds": 2},
}
RETRAIN = "/deployments/name/retrain/retrain-on-arrival"


def pid_files(stack: RunningStack) -> list[str]:
    return sorted(path.stem for path in stack.settings.dirs.run.glob("*.pid"))


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if item)


def two_hosts(root: Path) -> tuple[RunningStack, RunningStack]:
    """Host A's stack on free ports; host B's in its own home, pointed at A's servers."""
    shared = {
        "paths": {
            "data": str(root / "shared" / "data"),
            "ledger_url": f"sqlite:///{root / 'shared' / 'ledger.db'}",
        }
    }
    a = RunningStack.fresh(root / "a", write_params(root / "a.yaml", COMMON, shared))
    elsewhere = {"services": {"prefect_host": "localhost", "mlflow_host": "localhost"}}
    b_config = write_params(root / "b.yaml", COMMON, shared, elsewhere)
    # The same params.yaml ports as A (through the same variables), another home and config.
    env = {**a.env, "ARRIVALS_HOME": str(root / "b"), "ARRIVALS_CONFIG": str(b_config)}
    with stack_environ(env):
        b = RunningStack(load_settings(), env)
    return a, b


def test_servers_on_one_host_workers_on_another_train_a_dropped_file(tmp_path: Path) -> None:
    a, b = two_hosts(tmp_path)
    try:
        a.up("--only", "prefect,mlflow")
        assert pid_files(a) == ["mlflow", "prefect"]
        seen_by_a = a.status()["services"]
        assert [n for n, s in seen_by_a.items() if s.get("where") != "remote"] == [
            "prefect",
            "mlflow",
        ]
        assert all(seen_by_a[n]["healthy"] for n in ("prefect", "mlflow"))
        assert seen_by_a["worker"]["where"] == "remote"
        assert seen_by_a["worker"]["reachable"] is False  # nobody polls the pool yet
        applied_at = a.prefect("GET", RETRAIN).json()["updated"]  # A ran `prefect`: it applied

        b.up("--only", "engine,worker,sensor")
        assert pid_files(b) == ["engine", "sensor", "worker"]
        seen_by_b = b.status()["services"]
        for name in ("engine", "worker", "sensor"):
            assert seen_by_b[name]["healthy"] and "where" not in seen_by_b[name], name
        for name in ("prefect", "mlflow"):
            assert seen_by_b[name]["where"] == "remote" and seen_by_b[name]["reachable"], name
        assert seen_by_b["prefect"]["url"] == b.settings.prefect_ui_url
        assert b.settings.prefect_ui_url.startswith("http://localhost:")
        worker_env = environ_of(seen_by_b["worker"]["pid"])
        assert worker_env["PREFECT_API_URL"] == b.settings.prefect_api_url
        assert worker_env["MLFLOW_TRACKING_URI"] == b.settings.mlflow_url
        # The deployments existed: B's `up` left them as A applied them.
        assert a.prefect("GET", RETRAIN).json()["updated"] == applied_at
        wait_for(
            lambda: all(a.status()["services"][n]["reachable"] for n in ("worker", "sensor")),
            60,
            "A to see B's worker polling and B's sensor's heartbeat",
        )

        rows = training_pool(a.settings.dataset, a.settings.holdout)
        dropped = tmp_path / "two-hosts.csv"
        rows.iloc[:40].to_csv(dropped, index=False)
        a.arrivals("drop", str(dropped))  # into the shared inbox, from the servers' host
        record = b.wait_terminal("two-hosts.csv", timeout=240)
        assert (record.state, record.model_version) == (FileState.TRAINED, "1")
        assert a.versions_with("two-hosts.csv") == ["1"]  # in A's MLflow
        assert a.status()["files"]["trained"] == 1  # A reads the same ledger

        servers = {n: seen_by_a[n]["pid"] for n in ("prefect", "mlflow")}
        stopped = b.arrivals("down")
        assert "Stopped: sensor, worker, engine" in stopped.stderr + stopped.stdout
        assert pid_files(b) == []
        after = a.status()["services"]
        assert {n: after[n]["pid"] for n in servers} == servers  # B stopped only its own
        assert all(after[n]["healthy"] for n in servers)
    finally:
        b.arrivals("down", check=False)
        stop_by_pidfiles(b.settings.dirs.run)
        a.down()
    assert pid_files(a) == []
