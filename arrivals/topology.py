"""The composition root: what the product deploys and which processes a stack runs, declared once.

Our modules are named by string here and nowhere else: the deployments' entrypoints, the
automations' YAML files, what the warm engine imports ahead, the module each service runs.
Everything else (the supervisor, the CLI, `arrivals up`'s apply step) derives from this.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import automations
from arrivals.environment import prefect_ports, warm_engine_socket
from automations.apply import (
    DeploymentSpec,
    apply_automations,
    apply_deployments,
    apply_notification_blocks,
    automation_definitions,
    ensure_work_pool,
    reactive_window,
    remove_deployment,
)
from shared.settings import Settings

# -- deployments ---------------------------------------------------------------------------
# "flow/deployment": how Prefect, the automations' YAML and `run_deployment` name them.
PRODUCER_DEPLOYMENT = "produce-batch/producer"
RETRAIN_DEPLOYMENT = "retrain/retrain-on-arrival"
ENTRYPOINTS = {
    PRODUCER_DEPLOYMENT: "producer.flows:produce_batch",
    RETRAIN_DEPLOYMENT: "consumer.flows:retrain",
}

# -- automations -----------------------------------------------------------------------------
AUTOMATIONS_DIR = Path(automations.__file__).resolve().parent
AUTOMATION_FILES = ("retrain_on_arrival.yaml", "sensor_silent.yaml", "crash_silent_runs.yaml")
ALERT_BLOCK_PREFIX = "arrivals-alert"  # the Prefect notification blocks made of alerts.urls

# -- flow-run processes ----------------------------------------------------------------------
COLD_ENGINE = "prefect.engine"  # what a process worker runs per flow run, and a warm fork too
ENGINE_CLIENT = "arrivals.engine_client"  # the worker's command when runs start warm
LOG_PUMP = "arrivals.logpump"  # every service starts through it: its log rotates by size
# Imported once by the warm engine, before any fork: the engine, our flows and what a retrain
# imports (on this 2-core machine: Prefect 2.5 s, pandas + scikit-learn + skops 4.5 s, MLflow
# 1.3 s). Only imports run there, never a computation, so no thread pool has work in flight
# at the fork (OpenBLAS re-creates its threads in the child; OpenMP's pool does not exist yet).
PRELOAD = (
    COLD_ENGINE,
    "prefect.flow_engine",
    "prefect.deployments.steps",
    "prefect.client.orchestration",
    *(entrypoint.partition(":")[0] for entrypoint in ENTRYPOINTS.values()),
    "consumer.retrain",
    "consumer.ingest",
    "consumer.judge",
    "consumer.training",
    "consumer.validate",
    "consumer.registry",
    "consumer.plots",
    "shared.ledger",
    "shared.events",
    "pandas",
    "joblib",
    "skops.io",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.models",
)


def automation_files() -> list[Path]:
    """The automations `arrivals up` applies, one YAML file each."""
    return [AUTOMATIONS_DIR / name for name in AUTOMATION_FILES]


def automations_declared() -> list[dict]:
    """The declared automations, as the YAML files say them."""
    return automation_definitions(automation_files())


def flow_run_job_variables(settings: Settings) -> dict[str, str]:
    """The process worker's job variables: with warm start, runs start through the engine
    client (see arrivals.warm_engine), which falls back to the cold engine by itself."""
    socket_path = warm_engine_socket(settings)
    if socket_path is None:
        return {}
    return {"command": shlex.join([sys.executable, "-m", ENGINE_CLIENT, str(socket_path)])}


def deployment_specs(settings: Settings) -> list[DeploymentSpec]:
    """Every deployment of the product. The clock and the training never share one."""
    job_variables = flow_run_job_variables(settings)
    producer = DeploymentSpec(
        PRODUCER_DEPLOYMENT,
        ENTRYPOINTS[PRODUCER_DEPLOYMENT],
        "Drops the next batch of the source dataset into the inbox on a cron schedule.",
        cron=settings.automation.cron_schedule,
        job_variables=job_variables,
    )
    retrain = DeploymentSpec(
        RETRAIN_DEPLOYMENT,
        ENTRYPOINTS[RETRAIN_DEPLOYMENT],
        "Retrains when files arrive; run by the retrain-on-arrival automation.",
        # Coalescing: the running retrain claims every announced file and loops until
        # none is left, so an arrival while it runs needs no run of its own. CANCEL_NEW
        # drops that extra run before a process starts (cheap, nothing lost: the file is
        # in the ledger). ENQUEUE would start one process per file, 30 s polls apart.
        single_flight=True,
        # However a run starts, it keeps taking arrivals while its trigger ignores them.
        parameters={
            "trigger_window_seconds": reactive_window(automations_declared(), RETRAIN_DEPLOYMENT)
        },
        job_variables=job_variables,
    )
    return [*([producer] if settings.producer_off_reason is None else []), retrain]


def applied(_settings: Settings) -> bool:
    """Whether the Prefect the environment names has the retrain deployment (`up` applied)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(RETRAIN_DEPLOYMENT)
        except ObjectNotFound:
            return False
    return True


def apply_all(settings: Settings) -> None:
    """Work pool, deployments, automations: safe to run on every `up`."""
    work_pool = settings.services.work_pool
    ensure_work_pool(work_pool)
    ids = apply_deployments(deployment_specs(settings), work_pool)
    if settings.producer_off_reason is not None:
        remove_deployment(PRODUCER_DEPLOYMENT)  # an earlier config's cron would keep running
    blocks = apply_notification_blocks(settings.alerts.urls, ALERT_BLOCK_PREFIX)
    apply_automations(
        automations_declared(),
        ids,
        heartbeat_seconds=settings.sensor.heartbeat_seconds,
        notification_blocks=blocks,
    )


# -- services ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Service:
    """One kind of process the stack runs: `count` of them, named `name`, `name-2`, ..."""

    name: str
    module: str | None  # started as `python -m <module>`; None: through Prefect's own CLI
    count: Callable[[Settings], int]

    def instances(self, settings: Settings) -> list[str]:
        """The pid and log file names of this service's processes."""
        count = self.count(settings)
        return [self.name, *(f"{self.name}-{i}" for i in range(2, count + 1))][:count]


PREFECT_SERVER = Service("prefect", "arrivals.prefect_server", lambda s: len(prefect_ports(s)))
# The scale profile's API replicas run no background services; this process runs them once.
PREFECT_SERVICES = Service("prefect-services", None, lambda s: 1 if s.scaled else 0)
MLFLOW_SERVER = Service("mlflow", "arrivals.mlflow_server", lambda s: 1)
WARM_ENGINE = Service(
    "engine", "arrivals.warm_engine", lambda s: 0 if warm_engine_socket(s) is None else 1
)
WORKER = Service("worker", None, lambda s: s.scale.workers if s.scaled else 1)
SENSOR = Service("sensor", "automations.sensor", lambda s: 1)
SERVE = Service("serve", "serving.server", lambda s: 1 if s.serve.enabled else 0)
# In start order: the engine before the workers, so their first run can start warm.
SERVICES = (PREFECT_SERVER, PREFECT_SERVICES, MLFLOW_SERVER, WARM_ENGINE, WORKER, SENSOR, SERVE)


def service_names(settings: Settings) -> list[str]:
    """Every process of this profile, in start order (the contract's four always exist)."""
    return [name for service in SERVICES for name in service.instances(settings)]


def instance_index(name: str) -> int:
    """0 for `prefect`/`worker`, 1 for `prefect-2`/`worker-2`, ..."""
    tail = name.rsplit("-", 1)[-1]
    return int(tail) - 1 if tail.isdigit() else 0


def service_of(name: str) -> Service:
    """The service a process name (`worker-2`) belongs to."""
    for service in SERVICES:
        suffix = name.removeprefix(service.name)
        if suffix == "" or (suffix.startswith("-") and suffix[1:].isdigit()):
            return service
    raise KeyError(f"no service is named {name!r}")
