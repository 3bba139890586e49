"""Champion/challenger you can trust, suspects, and lineage both ways, on a real stack.

The story of this module, in order: a file with no signal is registered but not champion; a
file whose labels contradict the rest becomes suspect with no one acting; a later clean file
becomes champion without it; accept and retract work on the suspect; a retraction moves a
tainted champion.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from arrivals.harness import RunningStack, wait_for
from shared.dataset import compute_label, training_pool
from shared.events import CHAMPION_PROMOTED, FILE_SUSPECT
from tests.support.contract import DECISION_TAGS

pytestmark = pytest.mark.e2e

PARAMS_OVERRIDES = {
    "automation": {"cron_schedule": "0 0 1 1 *"},  # every file here is dropped by hand
    "sensor": {"rescan_seconds": 2, "reannounce_after_seconds": 20},
}


@pytest.fixture(scope="module")
def pool(stack: RunningStack):
    return training_pool(stack.settings.dataset, stack.settings.holdout)


def drop(stack: RunningStack, frame, folder: Path, name: str, state: str = "trained"):
    path = folder / name
    frame.to_csv(path, index=False)
    subprocess.run(["cp", str(path), str(stack.settings.dirs.inbox)], check=True)
    record = stack.wait_terminal(name)
    assert record.state == state, record.reason
    return record


def champion(stack: RunningStack) -> dict:
    return stack.mlflow(
        "/registered-models/alias", name=stack.settings.model.name, alias="champion"
    ).json()["model_version"]


def run_metrics(stack: RunningStack, version: str) -> dict[str, float]:
    run_id = stack.mlflow(
        "/model-versions/get", name=stack.settings.model.name, version=version
    ).json()["model_version"]["run_id"]
    metrics = stack.mlflow("/runs/get", run_id=run_id).json()["run"]["data"]["metrics"]
    return {m["key"]: m["value"] for m in metrics}


def lineage(stack: RunningStack, *args: str) -> dict:
    return json.loads(stack.arrivals("lineage", *args, "--json").stdout)


def files_of(stack: RunningStack, version: str) -> set[str]:
    return {f["name"] for f in lineage(stack, "--version", version)["files"]}


def test_a_file_with_no_signal_is_registered_but_not_champion(stack, pool, tmp_path):
    noise = pool.iloc[:40].copy()
    noise["tip"] = np.random.default_rng(0).permutation(noise["tip"].to_numpy())
    record = drop(stack, noise, tmp_path, "noise.csv")
    assert record.model_version == "1"
    (version,) = stack.model_versions()
    assert set(DECISION_TAGS) <= set(version["tags"])
    assert version["tags"]["arrivals.decision"] != "promoted"
    assert "prior baseline" in version["tags"]["arrivals.decision_reason"]
    assert stack.status()["champion"] is None
    assert stack.status()["files"]["suspect"] == 0  # a first file cannot be blamed alone


def test_a_contradicting_file_becomes_suspect_with_no_one_acting(stack, pool, tmp_path):
    flipped = pool.copy()
    label = compute_label(flipped, stack.settings.dataset.label)
    # Tips chosen so every row's label is the opposite of what its bill suggests.
    flipped["tip"] = (flipped["total_bill"] * label.map({1: 0.05, 0: 0.30})).round(2)
    bad = drop(
        stack,
        flipped.sample(frac=2, replace=True, random_state=1),
        tmp_path,
        "bad_c.csv",
        state="suspect",
    )
    assert "without it" in bad.reason and "prior baseline" in bad.reason

    event = wait_for(lambda: stack.events(FILE_SUSPECT), 30, "the inbox.file.suspect event")[0]
    assert event["resource"]["prefect.resource.name"] == "bad_c.csv"
    assert "without it" in event["payload"]["reason"]
    assert event["payload"]["round"] >= 1 and "flow-run" in event["payload"]["flow_run"]
    status = stack.status()
    assert status["files"]["suspect"] == 1
    stack.assert_counts_match_ledger()
    assert lineage(stack, "bad_c.csv")["file"]["state"] == "suspect"
    assert [v["version"] for v in stack.model_versions()] == ["1"]  # nothing trained on it
    events = stack.arrivals("events", "-n", "50").stdout
    assert "SUSPECT" in events and "bad_c.csv" in events


def test_a_later_clean_file_becomes_champion_without_the_suspect(stack, pool, tmp_path):
    record = drop(stack, pool.iloc[40:140], tmp_path, "good_a.csv")
    assert champion(stack)["version"] == record.model_version == "2"
    assert "bad_c.csv" not in files_of(stack, "2")

    by_file = lineage(stack, "good_a.csv")
    assert by_file["file"]["sha256"] == record.sha256
    assert by_file["versions"] == ["2"]
    assert lineage(stack, record.sha256[:12])["file"]["name"] == "good_a.csv"
    assert files_of(stack, "2") == {"noise.csv", "good_a.csv"}

    # The version carries the decision with its interval, the flow run and the plots.
    tags = {t["key"]: t["value"] for t in champion(stack)["tags"]}
    assert tags["arrivals.decision"] == "promoted"
    assert float(tags["arrivals.delta_ci_low"]) > stack.settings.promotion.min_improvement
    assert tags["arrivals.confidence"] == "0.95"
    assert tags["arrivals.flow_run_id"] == record.claimed_by
    run_id = champion(stack)["run_id"]
    plots = stack.mlflow("/artifacts/list", run_id=run_id, path="plots").json()["files"]
    assert {Path(f["path"]).name for f in plots} >= {
        "confusion_matrix.png",
        "roc_curve.png",
        "metric_over_versions.png",
    }
    decision = stack.mlflow("/artifacts/list", run_id=run_id).json()["files"]
    assert "decision.json" in {Path(f["path"]).name for f in decision}
    # The history file is written right after the files are marked trained.
    status = wait_for(
        lambda: (
            (s := stack.status())["last_decision"] and s["last_decision"]["version"] == "2" and s
        ),
        30,
        "the last decision in status",
    )
    assert status["champion"]["decision"]["outcome"] == "promoted"

    # The retrain run published its report as a Prefect artifact.
    artifacts = stack.prefect(
        "POST",
        "/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [record.claimed_by]}}},
    ).json()
    # One run may have judged several rounds (it keeps taking arrivals): one report each.
    reports = [
        a["data"] for a in artifacts if a["key"] == "retrain-report" and "good_a.csv" in a["data"]
    ]
    assert reports and "paired bootstrap" in reports[0]
    assert "champion is now v2" in reports[0]


def test_accept_then_retract_a_suspect(stack: RunningStack):
    result = stack.arrivals("accept", "bad_c.csv", check=False)
    assert result.returncode == 0, result.stderr
    accepted = lineage(stack, "bad_c.csv")["file"]
    assert accepted["state"] == "trained"
    (version,) = lineage(stack, "bad_c.csv")["versions"]
    assert version == "3" and "bad_c.csv" in files_of(stack, "3")
    assert champion(stack)["version"] == "2"  # a person's accept is no promotion

    result = stack.arrivals("retract", "bad_c.csv", "--reason", "labels inverted", check=False)
    assert result.returncode == 0, result.stderr
    assert lineage(stack, "bad_c.csv")["file"]["state"] == "retracted"
    for v in stack.model_versions():  # no champion ever trained on it
        if v["tags"].get("arrivals.decision") == "promoted":
            assert "bad_c.csv" not in files_of(stack, v["version"])


def test_retraining_the_same_data_gives_identical_metrics(stack: RunningStack):
    stack.arrivals("retrain")
    versions = sorted(int(v["version"]) for v in stack.model_versions())
    assert versions[-2:] == [4, 5]
    # v2 (noise + good_a), v4 (after the retraction) and v5 (a plain retrain): same files.
    for metric in ("roc_auc", "accuracy", "f1_macro", "log_loss"):
        assert run_metrics(stack, "4")[metric] == run_metrics(stack, "2")[metric]
        assert run_metrics(stack, "5")[metric] == run_metrics(stack, "2")[metric]
    for version in stack.model_versions():
        tags = version["tags"]
        assert set(DECISION_TAGS) <= set(tags), version["version"]
        if tags["arrivals.decision"] == "promoted":
            assert float(tags["arrivals.delta_ci_low"]) > 0


def test_retracting_a_file_the_champion_used_moves_the_champion(stack, pool, tmp_path):
    drop(stack, pool.iloc[140:], tmp_path, "good_b.csv")
    before = champion(stack)["version"]
    assert "good_a.csv" in files_of(stack, before)

    result = stack.arrivals("retract", "good_a.csv", check=False)
    assert result.returncode == 0, result.stderr

    after = champion(stack)["version"]
    assert after != before
    assert "good_a.csv" not in files_of(stack, after)
    previous = stack.mlflow(
        "/registered-models/alias", name=stack.settings.model.name, alias="previous_champion"
    ).json()["model_version"]
    assert previous["version"] == before
    wait_for(
        lambda: any(
            e["payload"]["new_version"] == after and "retracted" in e["payload"]["reason"]
            for e in stack.events(CHAMPION_PROMOTED)
        ),
        30,
        "the model.champion.promoted event saying why",
    )
    stack.assert_counts_match_ledger()
