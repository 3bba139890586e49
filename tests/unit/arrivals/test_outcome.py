"""What `retrain` / `retract` print at the end: each version, its decision, the champion."""

from __future__ import annotations

from types import SimpleNamespace

from arrivals.outcome import RunOutcome, Version, render_outcome, versions_of_run

DECISION = {"outcome": "kept champion", "reason": "ROC AUC +0.010 [-0.02, +0.04]: not sure enough"}


def test_a_version_prints_its_decision_and_reason_then_the_champion() -> None:
    outcome = RunOutcome("brave-fox", "http://ui/runs/flow-run/1", [Version("5", DECISION)], "4")
    assert render_outcome("tips", outcome) == [
        "Version   tips v5",
        "Decision  kept champion: ROC AUC +0.010 [-0.02, +0.04]: not sure enough",
        "Champion  tips v4",
    ]


def test_every_version_of_a_run_is_listed_oldest_first() -> None:
    versions = [Version("9", DECISION), Version("10", {"outcome": "promoted", "reason": "better"})]
    lines = render_outcome("tips", RunOutcome("r", "u", versions, "10"))
    assert lines[0] == "Version   tips v9" and lines[2] == "Version   tips v10"
    assert lines[3] == "Decision  promoted: better" and lines[-1] == "Champion  tips v10"


def test_no_version_says_why_from_the_runs_last_warning() -> None:
    outcome = RunOutcome(
        "r",
        "http://ui/runs/flow-run/1",
        warnings=["first", "No model this time: 12 rows\nTraceback (most recent call last):"],
    )
    assert render_outcome("tips", outcome) == [
        "Version   none from run r: No model this time: 12 rows",
        "Champion  none yet",
    ]


def test_no_version_and_no_warning_points_at_the_run() -> None:
    lines = render_outcome("tips", RunOutcome("r", "http://ui/runs/flow-run/1", warnings=[" "]))
    assert lines[0] == "Version   none from run r: see http://ui/runs/flow-run/1"


def test_a_version_without_decision_tags_points_at_the_run() -> None:
    lines = render_outcome("tips", RunOutcome("r", "http://u", [Version("2", None)]))
    assert lines[1] == "Decision  none recorded (see http://u)"


class VersionsClient:
    """An MlflowClient's `search_model_versions`, answering what a database store would."""

    def __init__(self, versions: list[SimpleNamespace]) -> None:
        self.versions = versions
        self.filters: list[str] = []

    def search_model_versions(self, filter_string: str) -> list[SimpleNamespace]:
        self.filters.append(filter_string)
        return self.versions


def test_versions_of_run_filter_on_the_run_tag_and_sort_by_number() -> None:
    tags = {"arrivals.decision": "promoted", "arrivals.decision_reason": "better"}
    client = VersionsClient(
        [SimpleNamespace(version=10, tags=tags), SimpleNamespace(version=9, tags={})]
    )
    versions = versions_of_run(client, "tips", "run-1")
    assert client.filters == ["name = 'tips' and tags.`arrivals.flow_run_id` = 'run-1'"]
    assert [v.number for v in versions] == ["9", "10"]
    assert versions[0].decision is None
    assert versions[1].decision is not None and versions[1].decision["reason"] == "better"
