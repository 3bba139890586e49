"""Deployments and automations, declared here and applied idempotently by `arrivals up`."""

from __future__ import annotations

import contextlib
import importlib
import logging
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import yaml

from shared.settings import Settings

log = logging.getLogger("arrivals.apply")
AUTOMATIONS_DIR = Path(__file__).resolve().parent
RETRAIN_DEPLOYMENT = "retrain/retrain-on-arrival"  # flow/deployment, as the YAML names it
PRODUCER_DEPLOYMENT = "produce-batch/producer"


@dataclass(frozen=True)
class DeploymentSpec:
    # module:flow function. Runs import it as a module (the project is installed), so a
    # run needs no pull step and the warm engine's already-imported module is used as is.
    entrypoint: str
    name: str
    description: str
    cron: str | None = None
    single_flight: bool = False  # at most one run at a time; a run started meanwhile is dropped
    parameters: dict[str, object] = field(default_factory=dict)  # defaults of every run


def deployment_specs(settings: Settings) -> list[DeploymentSpec]:
    """Every deployment of the product. The clock and the training never share one."""
    producer = DeploymentSpec(
        "producer.flows:produce_batch",
        "producer",
        "Drops the next batch of the source dataset into the inbox on a cron schedule.",
        cron=settings.automation.cron_schedule,
    )
    return [
        *([producer] if settings.producer_off_reason is None else []),
        DeploymentSpec(
            "consumer.flows:retrain",
            "retrain-on-arrival",
            "Retrains when files arrive; run by the retrain-on-arrival automation.",
            # Coalescing: the running retrain claims every announced file and loops until
            # none is left, so an arrival while it runs needs no run of its own. CANCEL_NEW
            # drops that extra run before a process starts (cheap, nothing lost: the file is
            # in the ledger). ENQUEUE would start one process per file, 30 s polls apart.
            single_flight=True,
            # However a run starts, it keeps taking arrivals while its trigger ignores them.
            parameters={"trigger_window_seconds": reactive_window(RETRAIN_DEPLOYMENT)},
        ),
    ]


def reactive_window(deployment: str) -> float:
    """The longest `within` of the reactive automations that run `deployment`, in seconds."""
    return max(
        (
            float(definition["trigger"].get("within", 0))
            for definition in automation_definitions()
            if definition.get("deployment") == deployment
            and definition["trigger"].get("posture") == "Reactive"
        ),
        default=0.0,
    )


def ensure_work_pool(settings: Settings) -> None:
    """A process work pool for the producer and the retrain."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=settings.services.work_pool, type="process"))


def flow_run_job_variables(settings: Settings) -> dict[str, str]:
    """The process worker's job variables: with warm start, runs start through the engine
    client (see arrivals.warm_engine), which falls back to the cold engine by itself."""
    socket_path = settings.warm_engine_socket
    if socket_path is None:
        return {}
    client = [sys.executable, "-m", "arrivals.engine_client", str(socket_path)]
    return {"command": shlex.join(client)}


def apply_deployments(settings: Settings) -> dict[str, UUID]:
    """Create or update every deployment; returns ids by `flow/deployment` name."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType

    single_flight = ConcurrencyLimitConfig(
        limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
    )
    ids: dict[str, UUID] = {}
    job_variables = flow_run_job_variables(settings)
    for spec in deployment_specs(settings):
        module, _, name = spec.entrypoint.partition(":")
        flow = getattr(importlib.import_module(module), name)
        deployment = flow.to_deployment(
            name=spec.name,
            entrypoint_type=EntrypointType.MODULE_PATH,
            work_pool_name=settings.services.work_pool,
            cron=spec.cron,
            description=spec.description,
            concurrency_limit=single_flight if spec.single_flight else None,
            job_variables=job_variables,
            parameters=spec.parameters,
        )
        ids[f"{flow.name}/{spec.name}"] = deployment.apply(
            work_pool_name=settings.services.work_pool
        )
        log.info("Deployment %s/%s applied", flow.name, spec.name)
    if settings.producer_off_reason is not None:
        remove_deployment(PRODUCER_DEPLOYMENT)
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


def automation_definitions() -> list[dict]:
    return [
        yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in sorted(AUTOMATIONS_DIR.glob("*.yaml"))
    ]


def resolve_automation(
    definition: dict, deployment_ids: dict[str, UUID], *, heartbeat_seconds: float | None = None
):
    """The Prefect automation for one YAML definition, its deployment name made an id.

    A trigger's `within_heartbeats: N` becomes `within` = N x `heartbeat_seconds` (the
    sensor's interval from params.yaml, at least Prefect's 10 s minimum for proactive triggers).
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
        actions.append(action)
    body["actions"] = actions
    return AutomationCore.model_validate(body)


def apply_automations(
    deployment_ids: dict[str, UUID], *, heartbeat_seconds: float | None = None
) -> list[UUID]:
    """Create or update each automation by name; extra copies of a name are deleted."""
    from prefect.client.orchestration import get_client

    applied = []
    with get_client(sync_client=True) as client:
        for definition in automation_definitions():
            automation = resolve_automation(
                definition, deployment_ids, heartbeat_seconds=heartbeat_seconds
            )
            existing = client.read_automations_by_name(automation.name)
            if existing:
                keep, *extra = existing
                client.update_automation(keep.id, automation)
                for duplicate in extra:
                    client.delete_automation(duplicate.id)
                applied.append(keep.id)
            else:
                applied.append(client.create_automation(automation))
            log.info("Automation %s applied", automation.name)
    return applied


def apply_all(settings: Settings) -> None:
    """Work pool, deployments, automations: safe to run on every `up`."""
    ensure_work_pool(settings)
    apply_automations(
        apply_deployments(settings), heartbeat_seconds=settings.sensor.heartbeat_seconds
    )
