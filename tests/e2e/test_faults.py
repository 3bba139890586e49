"""Never lose or double-count a file: faults injected into a real running stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from arrivals.harness import RunningStack, wait_for
from shared.dataset import training_pool
from shared.events import (
    FILE_ARRIVED,
    FILE_DUPLICATE,
    FILE_REJECTED,
    event_id,
    file_resource_id,
)
from shared.fs import sha256_file
from tests.support.stack import stored_events

pytestmark = pytest.mark.e2e

PARAMS_OVERRIDES = {
    # The producer's clock stays out of these tests: every file here is dropped by hand.
    "automation": {"cron_schedule": "0 0 1 1 *"},
    # Quick sweeps so a recovery shows within seconds, not minutes.
    "sensor": {"rescan_seconds": 2, "reannounce_after_seconds": 20, "heartbeat_seconds": 5},
    "dataset": {"max_file_bytes": 20000},
}
HEADER = "total_bill,tip,sex,smoker,day,time,size\n"


@pytest.fixture(scope="module")
def rows(stack: RunningStack):
    """The non-holdout source rows; each test writes its own slices so contents differ."""
    return training_pool(stack.settings.dataset, stack.settings.holdout)


_next = {"start": 0}


def write_slice(rows, folder: Path, name: str, n: int = 20) -> Path:
    """A CSV of `n` pool rows no other test used (distinct content, both classes likely)."""
    start = _next["start"] % (len(rows) - n)
    _next["start"] += 7  # overlapping windows, shifted: every file's bytes differ
    path = folder / name
    rows.iloc[start : start + n].to_csv(path, index=False)
    return path


def cp(path: Path, stack: RunningStack) -> None:
    subprocess.run(["cp", str(path), str(stack.settings.dirs.inbox)], check=True)


def kill_group(pid: int) -> None:
    """kill -9 the whole process group: a crash, not a shutdown."""
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 10, f"pid {pid} to die")


def ledger_states(stack: RunningStack) -> dict[str, str]:
    ledger = stack.ledger()
    try:
        return {r.name: r.state for r in ledger.files()}
    finally:
        ledger.close()


def _diagnosis(stack: RunningStack, name: str) -> str:
    """What the ledger, the registry and the logs say, for a test that timed out."""
    ledger = stack.ledger()
    try:
        records = [r for r in ledger.files() if r.name == name]
    finally:
        ledger.close()
    versions = {v["version"]: v["tags"].get("arrivals.decision") for v in stack.model_versions()}
    logs = {
        log: "\n".join(
            (stack.settings.dirs.logs / f"{log}.log").read_text(errors="replace").splitlines()[-40:]
        )
        for log in ("worker", "sensor")
    }
    return f"ledger: {records}\nversions: {versions}\n" + "\n".join(
        f"--- {log}.log ---\n{text}" for log, text in logs.items()
    )


def assert_trained_once(stack: RunningStack, names: list[str]) -> None:
    for name in names:
        try:
            record = stack.wait_terminal(name, timeout=180)
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}\n{_diagnosis(stack, name)}") from None
        assert record.state == "trained", (name, record.reason)
        assert stack.versions_with(name) == [record.model_version], name
        assert len(stored_events(stack, FILE_ARRIVED, file_resource_id(record.sha256))) >= 1
    assert all("arrivals.decision" in v["tags"] for v in stack.model_versions())
    stack.assert_counts_match_ledger()


def test_prefect_outage_delays_but_loses_nothing(stack: RunningStack, rows, tmp_path: Path):
    kill_group(stack.service_pid("prefect"))
    names = [f"outage_{i}.csv" for i in range(3)]
    for name in names:
        cp(write_slice(rows, tmp_path, name), stack)
    # Recorded durably while Prefect is down, waiting to be announced.
    wait_for(
        lambda: all(ledger_states(stack).get(n) == "detected" for n in names),
        30,
        "the sensor to record the files while Prefect is down",
    )
    result = stack.arrivals("up", "--detach", check=False)
    assert result.returncode == 0, result.stderr
    assert_trained_once(stack, names)


def test_sensor_down_files_are_found_on_restart(stack: RunningStack, rows, tmp_path: Path):
    kill_group(stack.service_pid("sensor"))
    assert stack.status()["services"]["sensor"]["healthy"] is False
    names = ["while_sensor_down_0.csv", "while_sensor_down_1.csv"]
    for name in names:
        cp(write_slice(rows, tmp_path, name), stack)
    result = stack.arrivals("up", "--detach", check=False)
    assert result.returncode == 0, result.stderr
    assert_trained_once(stack, names)


def test_an_event_prefect_accepted_but_lost_is_sent_again(stack: RunningStack, rows, tmp_path):
    """The chaos soak's finding 6: the API accepted a file's event (204), then a restart lost
    it before Prefect's persister wrote it. The ledger says announced; the sensor (here just
    restarted) finds the event missing from the store and sends it again, under its id."""
    kill_group(stack.service_pid("sensor"))
    cp(write_slice(rows, tmp_path, "lost_event.csv"), stack)
    path = stack.settings.dirs.inbox.resolve() / "lost_event.csv"
    ledger = stack.ledger()
    try:
        arrival = ledger.record_arrival(
            name=path.name,
            path=str(path),
            size=path.stat().st_size,
            sha256=sha256_file(path),
            detected_via="push",
        )
        ledger.mark_announced(arrival.id)  # accepted, and lost: the store never had it
    finally:
        ledger.close()
    assert not stack.events(FILE_ARRIVED, file_resource_id(arrival.sha256))
    result = stack.arrivals("up", "--detach", check=False)
    assert result.returncode == 0, result.stderr

    lost_id = event_id(FILE_ARRIVED, arrival.sha256, arrival.id)
    (event,) = wait_for(
        lambda: [
            e
            for e in stack.events(FILE_ARRIVED, file_resource_id(arrival.sha256))
            if e["id"] == lost_id
        ],
        60,
        "the lost event, sent again",
    )
    assert event["payload"]["name"] == "lost_event.csv"
    assert "reannounced" not in event["payload"], "the lost event itself, not a reminder"
    assert_trained_once(stack, ["lost_event.csv"])


def test_killed_retrain_is_trained_by_a_later_run(stack: RunningStack, rows, tmp_path: Path):
    # Everything slow (status calls) before the drop: the kill must land mid-run.
    parents = (stack.service_pid("engine"), stack.service_pid("worker"))
    path = write_slice(rows, tmp_path, "killed_run.csv")
    sha = sha256_file(path)
    cp(path, stack)
    # The run holds its claim for only a few seconds: poll the one open ledger connection
    # quickly (opening a ledger per poll was slow enough on a busy machine to kill too late).
    claimed = wait_for(
        lambda: (r := stack.open_ledger.get(sha)) is not None and r.state == "claimed" and r,
        60,
        "a retrain to claim the file",
        every=0.05,
    )
    # The process doing the training is a fork of the warm engine; the worker's child is its
    # client. Both die at once, as in a crash of the machine's flow-run processes.
    children = [
        pid
        for parent in parents
        for pid in subprocess.run(
            ["pgrep", "-P", str(parent)], capture_output=True, text=True
        ).stdout.split()
    ]
    assert len(children) >= 2, "no flow-run process (warm engine child and its client)"
    for child in children:
        os.kill(int(child), signal.SIGKILL)
    assert_trained_once(stack, ["killed_run.csv"])
    assert stack.wait_terminal("killed_run.csv").claimed_by != claimed.claimed_by
    killed = stack.flow_run(claimed.claimed_by)
    assert killed["state_type"] == "CRASHED", f"the killed run ended {killed['state_type']}"


def test_same_content_under_a_new_name_is_a_duplicate(stack: RunningStack, rows, tmp_path):
    original = write_slice(rows, tmp_path, "original.csv")
    cp(original, stack)
    first = stack.wait_terminal("original.csv")
    assert first.state == "trained"
    # The newest version number (a killed run's discarded version leaves a gap in the count).
    versions_before = max(int(v["version"]) for v in stack.model_versions())
    duplicates_before = stack.status()["files"]["duplicate"]

    copy = tmp_path / "renamed_copy.csv"
    copy.write_bytes(original.read_bytes())
    cp(copy, stack)
    duplicate = wait_for(
        lambda: stack.events(FILE_DUPLICATE, file_resource_id(first.sha256)),
        30,
        "the duplicate event",
    )
    assert duplicate[0]["payload"]["duplicate_of"] == "original.csv"
    assert duplicate[0]["payload"]["name"] == "renamed_copy.csv"
    assert (stack.settings.dirs.archive / "duplicates" / "renamed_copy.csv").exists()
    assert stack.status()["files"]["duplicate"] == duplicates_before + 1

    # A new file after it trains as the very next version: the duplicate made none.
    cp(write_slice(rows, tmp_path, "after_duplicate.csv"), stack)
    after = stack.wait_terminal("after_duplicate.csv")
    assert int(after.model_version) == versions_before + 1
    stack.assert_counts_match_ledger()


def _malformed(good: str) -> dict[str, bytes]:
    lines = good.splitlines()
    return {
        "empty.csv": b"",
        "header_only.csv": HEADER.encode(),
        "missing_column.csv": b"total_bill,tip,sex,smoker,day\n16.99,1.01,Female,No,Sun\n",
        "semicolons.csv": "\n".join(line.replace(",", ";") for line in lines).encode(),
        "not_a_number.csv": (HEADER + "abc,1.01,Female,No,Sun,Dinner,2\n").encode(),
        "unknown_day.csv": (HEADER + "16.99,1.01,Female,No,Mon,Dinner,2\n").encode(),
        "latin1.csv": (HEADER + "16.99,1.01,Femal\xe9,No,Sun,Dinner,2\n").encode("latin-1"),
        "broken_quotes.csv": (HEADER + '16.99,1.01,"Female,No,Sun,Dinner,2\n').encode(),
        "too_big.csv": (HEADER + "16.99,1.01,Female,No,Sun,Dinner,2\n" * 800).encode(),
    }


def test_malformed_files_are_quarantined_with_a_reason(stack: RunningStack, rows, tmp_path):
    good = write_slice(rows, tmp_path, "good_after_bad.csv")
    bad = _malformed(good.read_text())
    for name, content in bad.items():
        (tmp_path / name).write_bytes(content)
        cp(tmp_path / name, stack)
    cp(good, stack)

    quarantine = stack.settings.dirs.quarantine
    for name in bad:
        record = stack.wait_terminal(name)
        assert record.state == "rejected", name
        assert record.reason, name
        assert Path(record.stored_path) == quarantine / name
        assert (quarantine / f"{name}.reason.json").exists(), name
        rejected = wait_for(
            lambda record=record: stack.events(FILE_REJECTED, file_resource_id(record.sha256)),
            30,
            f"the rejected event of {name}",
        )
        assert rejected[0]["payload"]["reason"] == record.reason, name
        assert rejected[0]["payload"]["quarantine_path"] == str(quarantine / name)
    assert "semicolon" in ledger_reason(stack, "semicolons.csv")
    assert "UTF-8" in ledger_reason(stack, "latin1.csv")
    assert "limit" in ledger_reason(stack, "too_big.csv")
    assert stack.wait_terminal("good_after_bad.csv").state == "trained"
    stack.assert_counts_match_ledger()


def ledger_reason(stack: RunningStack, name: str) -> str:
    ledger = stack.ledger()
    try:
        return next(r.reason for r in ledger.files() if r.name == name)
    finally:
        ledger.close()


def test_release_readmits_a_fixed_file(stack: RunningStack):
    quarantine = stack.settings.dirs.quarantine
    fixed = quarantine / "unknown_day.csv"
    fixed.write_text(
        HEADER + "16.99,1.01,Female,No,Sun,Dinner,2\n24.59,5.61,Male,No,Sat,Dinner,4\n"
    )
    result = stack.arrivals("release", "unknown_day.csv", check=False)
    assert result.returncode == 0, result.stderr
    assert not fixed.exists()
    wait_for(
        lambda: ledger_states(stack).get("unknown_day.csv") == "trained",
        120,
        "the released file to train",
    )
    stack.assert_counts_match_ledger()


def test_temp_names_are_ignored_and_tools_all_work(stack: RunningStack, rows, tmp_path):
    inbox = stack.settings.dirs.inbox
    ignored = [".hidden.csv", "partial.csv.part", "~$office.csv", "x.csv.tmp"]
    for name in ignored:
        (inbox / name).write_text(HEADER + "16.99,1.01,Female,No,Sun,Dinner,2\n")
    (inbox / "notes.txt").write_text("not data\n")  # not a temp name: refused, not ignored

    via_mv = write_slice(rows, tmp_path, "via_mv.csv")
    subprocess.run(["mv", str(via_mv), str(inbox / "via_mv.csv")], check=True)
    via_rsync = write_slice(rows, tmp_path, "via_rsync.csv")
    subprocess.run(["rsync", str(via_rsync), str(inbox) + "/"], check=True)
    slow = write_slice(rows, tmp_path, "slow_writer.csv")
    # A writer that keeps the file open for ~4 s while it writes it in pieces.
    writer = (
        "import sys, time\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "with open(sys.argv[2], 'wb') as out:\n"
        "    for i in range(4):\n"
        "        out.write(data[i * len(data) // 4:(i + 1) * len(data) // 4]); out.flush()\n"
        "        time.sleep(1)\n"
    )
    subprocess.run([sys.executable, "-c", writer, str(slow), str(inbox / "slow_writer.csv")])

    for name in ("via_mv.csv", "via_rsync.csv", "slow_writer.csv"):
        assert stack.wait_terminal(name).state == "trained", name
    slow_record = stack.wait_terminal("slow_writer.csv")
    assert slow_record.sha256 == sha256_file(slow)  # announced after it was complete
    assert len(stored_events(stack, FILE_ARRIVED, file_resource_id(slow_record.sha256))) == 1
    ledger = stack.ledger()
    try:
        arrived_names = {a.name for a in ledger.arrivals()}
    finally:
        ledger.close()
    assert not arrived_names & set(ignored)
    assert all((inbox / name).exists() for name in ignored)
    notes = stack.wait_terminal("notes.txt")
    assert notes.state == "rejected" and notes.reason.startswith("not a CSV: notes.txt")
    assert (stack.settings.dirs.quarantine / "notes.txt.reason.json").exists()
    stack.assert_counts_match_ledger()


def _ledger_rows(stack: RunningStack) -> dict[str, tuple]:
    """Every file's state, version, claimer and place: what a run could change."""
    ledger = stack.ledger()
    try:
        return {
            r.sha256: (r.state, r.model_version, r.claimed_by, r.stored_path)
            for r in ledger.files()
        }
    finally:
        ledger.close()


def test_a_forged_arrival_event_trains_claims_and_reads_nothing(
    stack: RunningStack, rows, tmp_path
):
    """What a forged `inbox.file.arrived` guarantees: the run it starts completes and changes
    nothing the ledger did not announce. The event's sha256 only names the trigger; a run
    trains what the ledger announced. Here the forged event names a file already trained (a
    flow trusting it would train or claim that file again: a new version, a changed row) and a
    path outside the data folder (a flow reading it would move or record that file)."""
    target = write_slice(rows, tmp_path, "forged_target.csv")
    cp(target, stack)
    trained = stack.wait_terminal("forged_target.csv")
    assert trained.state == "trained" and trained.model_version is not None
    outside = tmp_path / "secret.csv"
    outside.write_text(HEADER + "16.99,1.01,Female,No,Sun,Dinner,2\n")
    outside_sha = sha256_file(outside)
    # Let earlier work finish, so the forged event's run really runs (not cancelled as a
    # second retrain in flight, nor ignored inside the automation's coalescing window).
    wait_for(lambda: not stack.active_runs("retrain/retrain-on-arrival"), 120, "retrains to end")
    rows_before = _ledger_rows(stack)
    versions_before = sorted(v["version"] for v in stack.model_versions())
    event = {
        "event": FILE_ARRIVED,
        "resource": {
            "prefect.resource.id": file_resource_id(trained.sha256),
            "prefect.resource.name": "secret.csv",
        },
        "payload": {
            "name": "secret.csv",
            "path": str(outside),
            "size": outside.stat().st_size,
            "sha256": trained.sha256,
        },
        "related": [],
    }
    sent: set[str] = set()  # the forged events' ids: the runs they start carry them

    def forged_run_completed() -> bool:
        runs = stack.flow_runs("retrain/retrain-on-arrival")
        mine = [r for r in runs if r["parameters"].get("event_id") in sent]
        failed = [r for r in mine if r["state_type"] in ("FAILED", "CRASHED")]
        assert not failed, f"the forged event's run failed: {failed[0]['state_name']}"
        if not mine:
            # (Again, if need be: a new event occurring now, outside the coalescing window.)
            event["id"] = str(uuid.uuid4())
            event["occurred"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            sent.add(event["id"])
            httpx.post(f"{stack.settings.prefect_api_url}/events", json=[event])
        return any(r["state_type"] == "COMPLETED" for r in mine)

    wait_for(forged_run_completed, 120, "a retrain run for the forged event to complete", every=3)
    assert _ledger_rows(stack) == rows_before  # nothing claimed, trained or rejected
    assert sorted(v["version"] for v in stack.model_versions()) == versions_before
    assert outside.read_text() == HEADER + "16.99,1.01,Female,No,Sun,Dinner,2\n"
    ledger = stack.ledger()
    try:
        assert ledger.get(outside_sha) is None
    finally:
        ledger.close()
    assert not (stack.settings.dirs.archive / "secret.csv").exists()
    assert not (stack.settings.dirs.quarantine / "secret.csv").exists()
