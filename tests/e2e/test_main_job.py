"""The main job, end to end on real servers: a hand-dropped CSV becomes the champion."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from arrivals.harness import RunningStack, wait_for
from shared.dataset import training_pool
from shared.events import file_resource_id
from shared.fs import sha256_file
from tests.support.stack import stored_events

pytestmark = pytest.mark.e2e
PROJECT = Path(__file__).resolve().parents[2]


def _producer_deployment(stack: RunningStack) -> dict:
    return stack.prefect("GET", "/deployments/name/produce-batch/producer").json()


def test_status_json_matches_the_operator_contract(stack: RunningStack):
    status = stack.status()
    for name in ("prefect", "mlflow", "worker", "sensor"):
        service = status["services"][name]
        assert service["healthy"] is True, (name, service)
        assert isinstance(service["pid"], int)
    assert status["services"]["engine"]["healthy"] is True  # warm start is on by default
    assert status["services"]["prefect"]["url"] == stack.settings.prefect_ui_url
    assert status["services"]["mlflow"]["url"] == stack.settings.mlflow_url
    assert status["inbox"] == str(stack.settings.dirs.inbox)
    assert status["quarantine"] == str(stack.settings.dirs.quarantine)
    assert set(status["files"]) >= {"pending", "trained", "rejected", "duplicate"}
    assert "champion" in status


def test_producer_is_deployed_on_the_cron_schedule_and_scheduled(stack: RunningStack):
    deployment = _producer_deployment(stack)
    crons = [s["schedule"].get("cron") for s in deployment["schedules"]]
    assert crons == ["*/2 * * * *"]
    scheduled = wait_for(
        lambda: stack.flow_runs("produce-batch/producer", state="SCHEDULED"),
        30,
        "the scheduler to plan producer runs",
    )
    minutes = {run["expected_start_time"][14:16] for run in scheduled}
    assert all(int(minute) % 2 == 0 for minute in minutes), minutes
    # From here on the tests drive the producer by hand, so the clock cannot race them.
    _pause_producer(stack)


def test_second_up_changes_nothing(stack: RunningStack):
    before = {name: s["pid"] for name, s in stack.status()["services"].items()}
    result = stack.arrivals("up", "--detach", check=False)
    assert result.returncode == 0, result.stderr
    after = {name: s["pid"] for name, s in stack.status()["services"].items()}
    assert after == before
    automations = stack.prefect("POST", "/automations/filter", json={}).json()
    names = [a["name"] for a in automations]
    assert names.count("retrain-on-arrival") == 1, names
    deployments = stack.prefect("POST", "/deployments/filter", json={}).json()
    assert sorted(d["name"] for d in deployments) == ["producer", "retrain-on-arrival"]


def _pause_producer(stack: RunningStack) -> None:
    """Pause the cron producer and let any run it already started finish and train, so the
    clock cannot race a test that counts versions."""
    stack.prefect("POST", f"/deployments/{_producer_deployment(stack)['id']}/pause_deployment")
    stack.quiesce()


def test_hand_dropped_csv_becomes_the_champion(stack: RunningStack, tmp_path: Path):
    settings = stack.settings
    _pause_producer(stack)
    # The producer's clock may have trained a batch before the pause (a cron tick can fall
    # between `up` and the first test); then the hand drop is judged against that champion.
    champion_before = stack.status()["champion"]
    source = tmp_path / "hand_drop.csv"
    # Every non-holdout row, columns shuffled: a hand-made file, not a produced batch.
    pool = training_pool(settings.dataset, settings.holdout)
    pool[list(reversed(pool.columns))].to_csv(source, index=False)
    sha = sha256_file(source)

    dropped = time.monotonic()
    subprocess.run(["cp", str(source), str(settings.dirs.inbox)], check=True)
    record = stack.wait_terminal("hand_drop.csv")
    sys.stderr.write(f"\nhand drop -> champion decision: {time.monotonic() - dropped:.1f} s\n")

    assert record.sha256 == sha
    assert record.state == "trained", record.reason
    assert record.rows == len(pool)

    # MLflow: the version that took the file is judged; with no champion before, it is the
    # champion; otherwise the alias is where its decision says.
    version = stack.mlflow(
        "/model-versions/get", name=settings.model.name, version=record.model_version
    ).json()["model_version"]
    tags = {tag["key"]: tag["value"] for tag in version.get("tags", [])}
    assert "hand_drop.csv" in tags["arrivals.files_new"]
    alias = stack.mlflow(
        "/registered-models/alias", name=settings.model.name, alias="champion"
    ).json()["model_version"]
    if champion_before is None:
        assert tags["arrivals.decision"] == "promoted"
    else:
        assert tags["arrivals.decision"] in ("promoted", "kept champion"), tags
    promoted = tags["arrivals.decision"] == "promoted"
    assert alias["version"] == (record.model_version if promoted else champion_before["version"])

    # Prefect: the arrival event is in the feed, and a completed retrain run took it.
    arrived = stored_events(stack, "inbox.file.arrived", file_resource_id(sha))
    assert len(arrived) == 1
    assert arrived[0]["payload"]["name"] == "hand_drop.csv"
    assert arrived[0]["resource"]["prefect.resource.name"] == "hand_drop.csv"
    # The run that took the file (the ledger names it) completed.
    wait_for(
        lambda: (
            stack.prefect("GET", f"/flow_runs/{record.claimed_by}").json()["state_type"]
            == "COMPLETED"
        ),
        60,
        "the retrain run that took the file to complete",
    )

    # It started warm: a fork of the warm engine ran it (see arrivals.warm_engine).
    engine_log = (settings.dirs.logs / "engine.log").read_text()
    assert f"for flow run {record.claimed_by}" in engine_log
    # No request hit a locked SQLite database and had to be retried (arrivals.prefect_server).
    prefect_log = (settings.dirs.logs / "prefect.log").read_text()
    assert "Encountered retryable exception" not in prefect_log

    # The file left the inbox for the archive; the history files say the same.
    assert not (settings.dirs.inbox / "hand_drop.csv").exists()
    assert Path(record.stored_path).parent == settings.dirs.archive
    status = stack.status()
    assert status["champion"]["version"] == alias["version"]
    ledger = stack.ledger()
    try:
        assert status["files"] == ledger.counts()
    finally:
        ledger.close()


def _task_completed(stack: RunningStack, flow_run_id: str, task: str) -> bool:
    body = {
        "flow_runs": {"id": {"any_": [flow_run_id]}},
        "task_runs": {"name": {"like_": task}},
    }
    runs = stack.prefect("POST", "/task_runs/filter", json=body).json()
    return any(run["state_type"] == "COMPLETED" for run in runs)


def test_a_file_landing_while_the_trigger_ignores_arrivals_is_not_left_waiting(
    stack: RunningStack, tmp_path: Path
):
    """The automation's trigger ignores arrivals for `within` s after it fires. A second
    file dropped as soon as the first run has judged its version lands in that window, after
    that run's last training round: the run, listening until the window closes, takes it on
    its first announcement. Before runs listened, the run had ended by then, and the file
    waited for the sensor's sweep to announce it again (a second arrival event, 11 s later)."""
    settings = stack.settings
    _pause_producer(stack)
    pool = training_pool(settings.dataset, settings.holdout)
    first, second = tmp_path / "window_first.csv", tmp_path / "window_second.csv"
    pool.iloc[:40].to_csv(first, index=False)
    pool.iloc[40:80].to_csv(second, index=False)

    subprocess.run(["cp", str(first), str(settings.dirs.inbox)], check=True)
    ledger = stack.ledger()
    try:
        taken = wait_for(
            lambda: (r := ledger.get(sha256_file(first))) and r.claimed_by and r,
            120,
            "a run to claim the first file",
            every=0.05,
        )
        run_id = taken.claimed_by
        wait_for(
            lambda: _task_completed(stack, run_id, "register_and_judge"),
            120,
            "the first run to judge its version",
            every=0.05,
        )
        run_state = stack.prefect("GET", f"/flow_runs/{run_id}").json()["state_type"]
        subprocess.run(["cp", str(second), str(settings.dirs.inbox)], check=True)
        record = stack.wait_terminal("window_second.csv")
    finally:
        ledger.close()

    assert record.state == "trained", record.reason
    sys.stderr.write(
        f"\nsecond file: first run {run_state} when it landed, "
        f"taken by {'that run' if record.claimed_by == run_id else 'another run'}\n"
    )
    arrived = stored_events(stack, "inbox.file.arrived", file_resource_id(record.sha256))
    assert len(arrived) == 1, "announced again: no run took the file when it arrived"
    if run_state == "RUNNING":  # the first run was listening when the second file landed
        assert record.claimed_by == run_id


def test_run_manual_produces_batch_3_which_is_then_trained(stack: RunningStack):
    result = subprocess.run(
        ["make", "--no-print-directory", "run-manual", "BATCH=3"],
        cwd=PROJECT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    record = stack.wait_terminal("tips_batch_003.csv")
    assert record.state == "trained"
    assert record.rows == stack.settings.automation.batch_size
    assert record.model_version is not None


def test_batch_past_max_batches_completes_cleanly(stack: RunningStack):
    past = stack.settings.automation.max_batches + 1
    result = stack.arrivals("drop", "--batch", str(past), check=False)
    assert result.returncode == 0, result.stderr
    assert "Completed" in result.stderr
    name = f"tips_batch_{past:03d}.csv"
    assert not (stack.settings.dirs.inbox / name).exists()
    ledger = stack.ledger()
    try:
        assert name not in {r.name for r in ledger.files()}
    finally:
        ledger.close()


def test_down_stops_everything(stack: RunningStack):
    pids = [s["pid"] for s in stack.status()["services"].values()]
    stack.arrivals("down")
    ports = (stack.settings.services.prefect_port, stack.settings.services.mlflow_port)
    from arrivals.processes import port_in_use

    wait_for(lambda: not any(port_in_use("127.0.0.1", p) for p in ports), 20, "ports to close")
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"pid {pid} still running"
    leftovers = subprocess.run(
        ["pgrep", "-f", str(stack.settings.home)], capture_output=True, text=True
    ).stdout.split()
    assert leftovers == []
    status = stack.status()
    assert not any(s["healthy"] for s in status["services"].values())
