"""Apply deployments and automations to Prefect, idempotently: generic, given their specs.

What the product deploys is declared once, in its composition root (`arrivals.topology`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

log = logging.getLogger("arrivals.apply")


@dataclass(frozen=True)
class DeploymentSpec:
    full_name: str  # "flow/deployment": the flow's name, then the deployment's
    # module:flow function. Runs import it as a module (the project is installed), so a
    # run needs no pull step and the warm engine's already-imported module is used as is.
    entrypoint: str
    description: str
    cron: str | None = None
    single_flight: bool = False  # at most one run at a time; a run started meanwhile is dropped
    parameters: dict[str, object] = field(default_factory=dict)  # defaults of every run
    job_variables: dict[str, str] = field(default_factory=dict)  # for the process worker

    @property
    def name(self) -> str:
        """The deployment's own name (without its flow's)."""
        return self.full_name.partition("/")[2]


def reactive_window(definitions: Iterable[dict], deployment: str) -> float:
    """The longest `within` of the reactive automations that run `deployment`, in seconds."""
    return max(
        (
            float(definition["trigger"].get("within", 0))
            for definition in definitions
            if definition.get("deployment") == deployment
            and definition["trigger"].get("posture") == "Reactive"
        ),
        default=0.0,
    )


def ensure_work_pool(name: str) -> None:
    """A process work pool named `name` (created once)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def apply_deployments(specs: Iterable[DeploymentSpec], work_pool: str) -> dict[str, UUID]:
    """Create or update each deployment in `work_pool`; returns ids by `flow/deployment` name."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType

    single_flight = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
    )
    ids: dict[str, UUID] = {}
    for spec in specs:
        module, _, name = spec.entrypoint.partition(":")
        flow = getattr(importlib.import_module(module), name)
        deployment = flow.to_deployment(
            name=spec.name,
            entrypoint_type=EntrypointType.MODULE_PATH,
            work_pool_name=work_pool,
            cron=spec.cron,
            description=spec.description,
            concurrency_limit=single_flight if spec.single_flight else None,
            job_variables=spec.job_variables,
            parameters=spec.parameters,
        )
        ids[f"{flow.name}/{spec.name}"] = deployment.apply(work_pool_name=work_pool)
        log.info("Deployment %s/%s applied", flow.name, spec.name)
    return ids


def remove_deployment(name: str) -> bool:
    """Delete a deployment an earlier config applied (its cron would keep running); idempotent."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            return False
        client.delete_deployment(deployment.id)
    log.info("Deployment %s removed (no longer configured)", name)
    return True


def automation_definitions(paths: Iterable[Path]) -> list[dict]:
    """The automations declared in YAML files, one per file, as plain mappings."""
    return [yaml.safe_load(path.read_text(encoding="utf-8")) for path in paths]


# A send-notification action naming this block is sent through every alert block `up` made.
ALERT_BLOCKS = "alerts"


def apply_notification_blocks(urls: Sequence[str], prefix: str) -> list[UUID]:
    """One Prefect notification block per Apprise URL (`prefix`-1, -2, ...), in order; blocks
    an earlier, longer list left are deleted. Their ids, for send-notification actions."""
    # The Prefect server can only load the block types it ships, and AppriseNotificationBlock
    # is abstract. SlackWebhook hands any URL that is not a Slack webhook to Apprise as it is
    # (prefect.blocks.notifications), so it carries every Apprise URL.
    from prefect.blocks.notifications import SlackWebhook
    from prefect.client.orchestration import get_client

    ids = [
        SlackWebhook(url=url).save(f"{prefix}-{number}", overwrite=True)
        for number, url in enumerate(urls, start=1)
    ]
    with get_client(sync_client=True) as client:
        for document in client.read_block_documents_by_type(
            SlackWebhook.get_block_type_slug(), include_secrets=False
        ):
            if (document.name or "").startswith(f"{prefix}-") and document.id not in ids:
                client.delete_block_document(document.id)
                log.info("Notification block %s removed (no longer configured)", document.name)
    return ids


def resolve_automation(
    definition: dict,
    deployment_ids: dict[str, UUID],
    *,
    heartbeat_seconds: float | None = None,
    notification_blocks: Sequence[UUID] = (),
):
    """The Prefect automation for one YAML definition, its deployment name made an id.

    A trigger's `within_heartbeats: N` becomes `within` = N x `heartbeat_seconds` (the
    sensor's interval from params.yaml, at least Prefect's 10 s minimum for proactive triggers).
    A send-notification action on `block_document_id: alerts` becomes one action per block of
    `notification_blocks`; with none, `do-nothing` (alerts are off).
    """
    from prefect.events.schemas.automations import AutomationCore

    body = dict(definition)
    deployment = body.pop("deployment", None)
    trigger = dict(body["trigger"])
    beats = trigger.pop("within_heartbeats", None)
    if beats is not None:
        if heartbeat_seconds is None:
            raise ValueError(f"automation {body.get('name')}: within_heartbeats needs the interval")
        trigger["within"] = max(10.0, float(beats) * heartbeat_seconds)
    body["trigger"] = trigger
    actions = []
    for action in body["actions"]:
        action = dict(action)
        if action["type"] == "run-deployment" and action.get("source") == "selected":
            action["deployment_id"] = str(deployment_ids[deployment])
        alerts = action.get("block_document_id") == ALERT_BLOCKS
        if action["type"] == "send-notification" and alerts:
            sends = [{**action, "block_document_id": str(b)} for b in notification_blocks]
            actions += sends or [{"type": "do-nothing"}]
            continue
        actions.append(action)
    body["actions"] = actions
    return AutomationCore.model_validate(body)


def unchanged(existing: Any, wanted: Any) -> bool:
    """Whether the server's automation already is the `AutomationCore` we would write."""
    fields = set(type(wanted).model_fields)
    current = type(wanted).model_validate(existing.model_dump(include=fields))
    # Python mode, not JSON: a trigger's `after` and `expect` are sets, and JSON lists them in
    # an order that changes with each process's hash seed, so equal sets compared unequal in
    # some `up` runs and the rewrite restarted crash-silent-runs' windows (soak finding).
    return current.model_dump() == wanted.model_dump()


def apply_automations(
    definitions: Sequence[dict],
    deployment_ids: dict[str, UUID],
    *,
    heartbeat_seconds: float | None = None,
    notification_blocks: Sequence[UUID] = (),
) -> list[UUID]:
    """Create or update each automation by name; extra copies of a name are deleted."""
    from prefect.client.orchestration import get_client

    applied = []
    with get_client(sync_client=True) as client:
        for definition in definitions:
            automation = resolve_automation(
                definition,
                deployment_ids,
                heartbeat_seconds=heartbeat_seconds,
                notification_blocks=notification_blocks,
            )
            existing = client.read_automations_by_name(automation.name)
            if existing:
                keep, *extra = existing
                # An update restarts a proactive trigger's window: an `up` that heals a
                # crashed service every half minute would keep crash-silent-runs and
                # sensor-silent from ever firing. Only a changed definition is written.
                if unchanged(keep, automation):
                    log.info("Automation %s unchanged", automation.name)
                else:
                    client.update_automation(keep.id, automation)
                for duplicate in extra:
                    client.delete_automation(duplicate.id)
                applied.append(keep.id)
            else:
                applied.append(client.create_automation(automation))
            log.info("Automation %s applied", automation.name)
    return applied
