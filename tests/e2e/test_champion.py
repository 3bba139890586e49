"""Champion/challenger you can trust, and lineage both ways, on a real stack."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from shared.dataset import compute_label, training_pool
from shared.events import CHAMPION_PROMOTED
from tests.e2e.conftest import RunningStack, wait_for

pytestmark = pytest.mark.e2e

PARAMS_OVERRIDES = {
    "automation": {"cron_schedule": "0 0 1 1 *"},  # every file here is dropped by hand
    "sensor": {"rescan_seconds": 2, "reannounce_after_seconds": 20},
}


@pytest.fixture(scope="module")
def pool(stack: RunningStack):
    return training_pool(stack.settings.dataset, stack.settings.holdout)


def drop(stack: RunningStack, frame, folder: Path, name: str):
    path = folder / name
    frame.to_csv(path, index=False)
    subprocess.run(["cp", str(path), str(stack.settings.dirs.inbox)], check=True)
    record = stack.wait_terminal(name)
    assert record.state == "trained", record.reason
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


def test_first_file_is_champion_with_lineage_both_ways(stack: RunningStack, pool, tmp_path):
    record = drop(stack, pool.iloc[:120], tmp_path, "good_a.csv")
    assert champion(stack)["version"] == record.model_version == "1"

    by_file = lineage(stack, "good_a.csv")
    assert by_file["file"]["sha256"] == record.sha256
    assert by_file["versions"] == ["1"]
    by_sha = lineage(stack, record.sha256[:12])
    assert by_sha["file"]["name"] == "good_a.csv"
    by_version = lineage(stack, "--version", "1")
    assert [(f["name"], f["sha256"]) for f in by_version["files"]] == [
        ("good_a.csv", record.sha256)
    ]

    # The version itself carries the flow run and its trigger, and the evaluation plots.
    tags = {t["key"]: t["value"] for t in champion(stack)["tags"]}
    assert tags["arrivals.flow_run_id"] == record.claimed_by
    assert tags["arrivals.flow_run_url"].endswith(record.claimed_by)
    run_id = champion(stack)["run_id"]
    plots = stack.mlflow("/artifacts/list", run_id=run_id, path="plots").json()["files"]
    assert {Path(f["path"]).name for f in plots} >= {
        "confusion_matrix.png",
        "roc_curve.png",
        "metric_over_versions.png",
    }

    # The retrain run published its report as a Prefect artifact.
    artifacts = stack.prefect(
        "POST",
        "/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [record.claimed_by]}}},
    ).json()
    reports = [a for a in artifacts if a["key"] == "retrain-report"]
    assert reports and "good_a.csv" in reports[0]["data"]
    assert "Decision" in reports[0]["data"]


def test_corrupted_labels_are_registered_but_not_promoted(stack: RunningStack, pool, tmp_path):
    settings = stack.settings
    flipped = pool.copy()
    label = compute_label(flipped, settings.dataset.label)
    # Tip shares chosen so every row's label is the opposite of what its features suggest.
    flipped["tip"] = (flipped["total_bill"] * label.map({1: 0.05, 0: 0.30})).round(2)
    doubled = flipped.sample(frac=2, replace=True, random_state=1)
    corrupted = drop(stack, doubled, tmp_path, "bad_c.csv")

    assert corrupted.model_version == "2"
    version = stack.mlflow("/model-versions/get", name=settings.model.name, version="2").json()
    tags = {t["key"]: t["value"] for t in version["model_version"]["tags"]}
    assert tags["arrivals.decision"] == "kept champion"
    assert champion(stack)["version"] == "1"
    # The champion was scored on the new rows before training: the drift signal is logged.
    assert "prequential_accuracy" in run_metrics(stack, "2")


def test_retraining_the_same_data_gives_identical_metrics(stack: RunningStack):
    stack.arrivals("retract", "bad_c.csv", "--reason", "labels corrupted")
    stack.arrivals("retrain")
    versions = sorted(int(v["version"]) for v in stack.model_versions())
    assert versions[-2:] == [3, 4]
    # v1 (good_a alone), v3 and v4 (rebuilds after bad_c was retracted): same files, params.
    for metric in ("roc_auc", "accuracy", "f1_macro", "log_loss"):
        assert run_metrics(stack, "3")[metric] == run_metrics(stack, "1")[metric]
        assert run_metrics(stack, "4")[metric] == run_metrics(stack, "1")[metric]
    assert lineage(stack, "bad_c.csv")["file"]["state"] == "retracted"


def test_retracting_a_file_the_champion_used_moves_the_champion(stack, pool, tmp_path):
    drop(stack, pool.iloc[120:], tmp_path, "good_b.csv")
    before = champion(stack)["version"]
    assert "good_a.csv" in {f["name"] for f in lineage(stack, "--version", before)["files"]}

    result = stack.arrivals("retract", "good_a.csv", check=False)
    assert result.returncode == 0, result.stderr

    after = champion(stack)["version"]
    assert after != before
    assert "good_a.csv" not in {f["name"] for f in lineage(stack, "--version", after)["files"]}
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
