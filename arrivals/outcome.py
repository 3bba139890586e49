"""What a manual retrain run came to: its versions, each one's decision and reason, the champion.

`read_outcome` asks the registry (the versions a flow run registered carry its id in the
`arrivals.flow_run_id` tag, and their decision in the `arrivals.decision*` tags, as
`arrivals status` reads them) and, when the run registered none, the run's own warnings.
`render_outcome` is pure: the lines `arrivals retrain` / `retract` / `accept` end with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from arrivals.status import decision_of_tags
from shared.settings import Settings

RUN_TAG = "arrivals.flow_run_id"


@dataclass(frozen=True)
class Version:
    number: str
    decision: dict[str, Any] | None  # `decision_of_tags`; None: the run died before tagging it


@dataclass(frozen=True)
class RunOutcome:
    run_name: str
    run_url: str
    versions: list[Version] = field(default_factory=list)  # oldest first
    champion: str | None = None
    warnings: list[str] = field(default_factory=list)  # the run's, read when it made no version


def render_outcome(model: str, outcome: RunOutcome) -> list[str]:
    """`Version / Decision` per version (or why there is none), then `Champion`."""
    lines: list[str] = []
    for version in outcome.versions:
        lines.append(f"Version   {model} v{version.number}")
        decision = version.decision
        if decision is None:
            lines.append(f"Decision  none recorded (see {outcome.run_url})")
        else:
            lines.append(f"Decision  {decision['outcome']}: {decision['reason']}")
    if not outcome.versions:
        # A warning can carry a traceback: its first line says what happened.
        last = outcome.warnings[-1].strip().splitlines() if outcome.warnings else []
        why = last[0] if last else f"see {outcome.run_url}"
        lines.append(f"Version   none from run {outcome.run_name}: {why}")
    champion = f"{model} v{outcome.champion}" if outcome.champion else "none yet"
    lines.append(f"Champion  {champion}")
    return lines


def versions_of_run(client, model: str, run_id: str) -> list[Version]:
    """The versions one flow run registered (an `MlflowClient`), oldest first."""
    found = client.search_model_versions(f"name = '{model}' and tags.`{RUN_TAG}` = '{run_id}'")
    versions = [
        Version(str(v.version), decision_of_tags(dict(v.tags)))  # an int from a database store
        for v in found
    ]
    return sorted(versions, key=lambda v: int(v.number))


def run_warnings(client, run_id: str) -> list[str]:
    """The run's warnings and errors, oldest first (a `SyncPrefectClient`)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel

    logs = client.read_logs(
        log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[run_id]),
            level=LogFilterLevel(ge_=logging.WARNING),
        ),
        limit=50,
    )
    return [entry.message for entry in logs]


def read_outcome(settings: Settings, run_id: str, run_name: str) -> RunOutcome:
    """Ask MLflow (and, for a run without a version, Prefect) what the run came to."""
    # Imported here: MLflow costs over a second to import.
    from mlflow import MlflowClient

    from consumer.registry import MlflowRegistry

    model = settings.model.name
    registry = MlflowRegistry(settings.mlflow_url, model, settings.dataset.name)
    versions = versions_of_run(MlflowClient(settings.mlflow_url), model, run_id)
    champion = registry.champion()
    warnings: list[str] = []
    if not versions:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            warnings = run_warnings(client, run_id)
    return RunOutcome(
        run_name=run_name,
        run_url=f"{settings.prefect_ui_url}/runs/flow-run/{run_id}",
        versions=versions,
        champion=champion.version if champion else None,
        warnings=warnings,
    )
