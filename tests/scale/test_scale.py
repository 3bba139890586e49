"""The scale profile on real engines: Prefect on PostgreSQL with Redis messaging, two API
replicas, separate background services, two workers, MLflow and the ledger on PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from arrivals.environment import prefect_env
from arrivals.harness import RunningStack, wait_for
from shared.dataset import training_pool
from tests.support.scale import POSTGRES, scale_overrides

pytestmark = pytest.mark.scale
PARAMS_OVERRIDES = scale_overrides()


def workers_that_ran(stack: RunningStack, flow_run_ids: set[str]) -> set[str]:
    """Which worker service submitted each run (from the workers' own logs)."""
    ran = set()
    for log in stack.settings.dirs.logs.glob("worker*.log"):
        submitted = set(re.findall(r"submitting flow run '([0-9a-f-]+)'", log.read_text()))
        if submitted & flow_run_ids:
            ran.add(log.stem)
    return ran


def test_every_engine_is_postgresql_or_redis(stack: RunningStack):
    status = stack.status()
    for name in ("prefect", "prefect-2", "prefect-services", "mlflow", "worker", "worker-2"):
        assert status["services"][name]["healthy"], name
    scale = PARAMS_OVERRIDES["scale"]
    with psycopg.connect(f"{POSTGRES}/{scale['prefect_database']}") as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        deployments = conn.execute("SELECT count(*) FROM deployment").fetchone()[0]
    sys.stderr.write(f"\nPrefect, MLflow and the ledger on PostgreSQL {version}\n")
    assert deployments == 2
    # MLflow's schema is in its PostgreSQL database (migrated to one revision), and it holds
    # no model yet: this is the module's first test and the producer's clock never ticks here.
    with psycopg.connect(f"{POSTGRES}/{scale['mlflow_database']}") as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM registered_models").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM model_versions").fetchone()[0] == 0
    assert stack.settings.ledger_url.startswith("postgresql+psycopg://")
    assert stack.settings.ledger_url.endswith(f"/{scale['ledger_database']}")
    assert stack.status()["files"]["trained"] == 0
    env = prefect_env(stack.settings)
    assert env["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"


def test_hand_drop_on_postgresql_becomes_champion(stack: RunningStack, tmp_path: Path):
    pool = training_pool(stack.settings.dataset, stack.settings.holdout)
    source = tmp_path / "scale_hand_drop.csv"
    pool.iloc[:120].to_csv(source, index=False)
    subprocess.run(["cp", str(source), str(stack.settings.dirs.inbox)], check=True)
    record = stack.wait_terminal("scale_hand_drop.csv")
    assert record.state == "trained", record.reason
    champion = stack.mlflow(
        "/registered-models/alias", name=stack.settings.model.name, alias="champion"
    ).json()["model_version"]
    assert champion["version"] == record.model_version
    # What MLflow's API answers is what its PostgreSQL database holds.
    name = stack.settings.model.name
    with psycopg.connect(f"{POSTGRES}/{PARAMS_OVERRIDES['scale']['mlflow_database']}") as conn:
        models = conn.execute("SELECT name FROM registered_models").fetchall()
        versions = conn.execute("SELECT version FROM model_versions WHERE name = %s", (name,))
        aliased = conn.execute(
            "SELECT version FROM registered_model_aliases WHERE name = %s AND alias = %s",
            (name, "champion"),
        ).fetchall()
        assert int(record.model_version) in {row[0] for row in versions.fetchall()}
    assert models == [(name,)]
    assert aliased == [(int(record.model_version),)]
    stack.assert_counts_match_ledger()


def _wave(stack: RunningStack, pool, folder: Path, wave: int, size: int) -> list[str]:
    names = []
    for i in range(size):
        name = f"burst_w{wave}_{i:02d}.csv"
        pool.sample(n=15, random_state=wave * 100 + i).to_csv(folder / name, index=False)
        names.append(name)
    subprocess.run(["cp", *[str(folder / n) for n in names], str(stack.settings.dirs.inbox)])
    return names


def test_burst_is_shared_by_two_workers_exactly_once(stack: RunningStack, tmp_path: Path):
    """Three waves of one burst. While only one worker has run retrains, it is paused for
    the next wave so the other must take over: runs move between workers, and still no file
    is lost or doubled."""
    pool = training_pool(stack.settings.dataset, stack.settings.holdout)
    files_before = stack.status()["files"]
    started = time.monotonic()
    records, all_names = [], []
    for wave in (1, 2, 3):
        ran = workers_that_ran(stack, {r.claimed_by for r in records})
        paused = stack.service_pid(ran.pop()) if len(ran) == 1 else None
        if paused:
            os.kill(paused, signal.SIGSTOP)
        try:
            names = _wave(stack, pool, tmp_path, wave, 20)
            records += [stack.wait_terminal(n, timeout=180) for n in names]
            all_names += names
        finally:
            if paused:
                os.kill(paused, signal.SIGCONT)
        wait_for(lambda: not stack.active_runs("retrain/retrain-on-arrival"), 60, "the wave to end")
    drained = time.monotonic() - started

    runs = {r.claimed_by for r in records}
    ran = workers_that_ran(stack, runs)
    sys.stderr.write(
        f"\n60 files in 3 waves drained in {drained:.1f} s by {len(runs)} run(s) on {sorted(ran)}\n"
    )
    assert ran == {"worker", "worker-2"}
    assert len(records) == len(set(all_names)) == 60
    assert all(r.state == "trained" for r in records)  # 0 lost
    files_after = stack.status()["files"]
    assert files_after["trained"] - files_before["trained"] == 60
    assert files_after["pending"] == 0
    # 0 duplicated: every file is new in exactly one version (the versions' own history).
    first_versions: dict[str, list[str]] = {}
    for path in stack.settings.dirs.metrics.glob("version-*.json"):
        summary = json.loads(path.read_text())
        for name in summary["files"]:
            first_versions.setdefault(name, []).append(summary["version"])
    assert all(len(first_versions.get(n, [])) == 1 for n in all_names), {
        n: first_versions.get(n) for n in all_names if len(first_versions.get(n, [])) != 1
    }
    stack.assert_counts_match_ledger()
