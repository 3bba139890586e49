"""`arrivals retrain` and `arrivals retract` end by saying what came of them, on a real stack.

Each prints `Version <model> vN`, `Decision <outcome>: <reason>` (as the version's MLflow
tags record them) and `Champion <model> vM` (the `champion` alias). A retract run again
retrains again instead of saying there is nothing to retract.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from arrivals.harness import RunningStack, wait_for
from shared.dataset import training_pool

pytestmark = pytest.mark.e2e
RETRAIN = "retrain/retrain-on-arrival"

PARAMS_OVERRIDES = {
    "automation": {"cron_schedule": "0 0 1 1 *"},  # no producer runs: files come by hand
}


@pytest.fixture(scope="module")
def two_files(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two clean files, dropped by hand and trained, one after the other."""
    pool = training_pool(stack.settings.dataset, stack.settings.holdout)
    folder = tmp_path_factory.mktemp("drops")
    names = ["first.csv", "second.csv"]
    for name, rows in zip(names, (pool.iloc[:80], pool.iloc[80:160]), strict=True):
        path = folder / name
        rows.to_csv(path, index=False)
        subprocess.run(["cp", str(path), str(stack.settings.dirs.inbox)], check=True)
        record = stack.wait_terminal(name)
        assert record.state == "trained", record.reason
    # The producer's yearly run stays scheduled, so wait on the retrains alone.
    wait_for(lambda: not stack.active_runs(RETRAIN), 120, "the retrains to end")
    return names


def printed(stdout: str) -> dict[str, list[str]]:
    """The `Version` / `Decision` / `Champion` lines of a command's output, by label."""
    lines: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        label, _, rest = line.partition("  ")
        lines.setdefault(label, []).append(rest.strip())
    return lines


def version_tags(stack: RunningStack, version: str) -> dict[str, str]:
    found = stack.mlflow(
        "/model-versions/get", name=stack.settings.model.name, version=version
    ).json()["model_version"]
    return {tag["key"]: tag["value"] for tag in found.get("tags", [])}


def champion_version(stack: RunningStack) -> str:
    return stack.mlflow(
        "/registered-models/alias", name=stack.settings.model.name, alias="champion"
    ).json()["model_version"]["version"]


def assert_says_what_came_of_it(stack: RunningStack, result: subprocess.CompletedProcess) -> str:
    """The printed version exists, its decision is its tags', the champion is the alias'."""
    assert result.returncode == 0, result.stderr
    lines = printed(result.stdout)
    model = stack.settings.model.name
    (version_line,) = lines["Version"]
    assert version_line.startswith(f"{model} v"), result.stdout
    version = version_line.removeprefix(f"{model} v")
    tags = version_tags(stack, version)
    (decision,) = lines["Decision"]
    assert decision == f"{tags['arrivals.decision']}: {tags['arrivals.decision_reason']}"
    assert tags["arrivals.decision_reason"], "a decision always has its reason"
    (champion,) = lines["Champion"]
    assert champion == f"{model} v{champion_version(stack)}"
    assert "Traceback" not in result.stderr
    return version


def test_retrain_prints_the_version_it_made_its_decision_and_the_champion(
    stack: RunningStack, two_files: list[str]
) -> None:
    before = {v["version"] for v in stack.model_versions()}
    version = assert_says_what_came_of_it(stack, stack.arrivals("retrain", check=False))
    assert version not in before, "a new version, made by this run"


def test_retract_prints_the_rebuild_without_the_file(
    stack: RunningStack, two_files: list[str]
) -> None:
    result = stack.arrivals("retract", "second.csv", "--reason", "bad labels", check=False)
    version = assert_says_what_came_of_it(stack, result)
    files = stack.arrivals("lineage", "--version", version, "--json").stdout
    assert "first.csv" in files and "second.csv" not in files
    record = stack.open_ledger.find("second.csv")
    assert record is not None and record.state == "retracted"


def test_retract_again_retrains_again_instead_of_nothing_to_retract(
    stack: RunningStack, two_files: list[str]
) -> None:
    before = {v["version"] for v in stack.model_versions()}
    result = stack.arrivals("retract", "second.csv", check=False)
    version = assert_says_what_came_of_it(stack, result)
    assert version not in before
    assert "second.csv was retracted already" in result.stderr, result.stderr


def test_drop_refuses_a_temp_name_and_the_inbox_stays_empty(
    stack: RunningStack, tmp_path: Path
) -> None:
    source = tmp_path / "week.csv.part"
    source.write_text("total_bill,tip\n10,1\n")
    result = stack.arrivals("drop", str(source), check=False)
    assert result.returncode == 2
    assert "sensor ignores" in result.stderr
    assert list(stack.settings.dirs.inbox.glob("week*")) == []
