"""Roles: which of a stack's processes `arrivals up --only ROLE,...` runs on this host.

A role is a kind of process (docs/scaling.md): `prefect` (the first API server), `mlflow`,
`engine`, `worker`, `sensor`, `serve`, and in the scale profile `replicas` (the API servers
after the first) and `services` (prefect-services). Pure, but for the one-line file in which a home
remembers its roles, so `status` knows which processes are local and which run elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from arrivals import topology
from shared.settings import Settings

PREFECT = "prefect"
REPLICAS = "replicas"
SERVICES = "services"
MLFLOW = "mlflow"
ENGINE = "engine"
WORKER = "worker"
SENSOR = "sensor"
SERVE = "serve"
EMBEDDED_ROLES = (PREFECT, MLFLOW, ENGINE, WORKER, SENSOR, SERVE)
SCALE_ROLES = (PREFECT, REPLICAS, SERVICES, MLFLOW, ENGINE, WORKER, SENSOR, SERVE)
# Their processes talk to the Prefect API from the start: a host without `prefect` waits
# for the remote one before starting them (a worker cannot even register without it).
NEEDS_PREFECT = frozenset({REPLICAS, SERVICES, WORKER, SENSOR})
# They write the ledger and read the data folder (the schema and the holdout come first).
NEEDS_DATA = frozenset({WORKER, SENSOR})
ROLE_OF_SERVICE = {
    topology.PREFECT_SERVICES.name: SERVICES,
    topology.MLFLOW_SERVER.name: MLFLOW,
    topology.WARM_ENGINE.name: ENGINE,
    topology.WORKER.name: WORKER,
    topology.SENSOR.name: SENSOR,
    topology.SERVE.name: SERVE,
}


class RoleError(ValueError):
    """An unknown role, or one this profile does not have; the message names it."""


class Apply(Enum):
    """Whether `up` applies the work pool, deployments and automations."""

    ALWAYS = "always"  # this host runs the first API server: its config is the one applied
    IF_MISSING = "if missing"  # Prefect runs elsewhere: the first `up` that finds none applies
    NEVER = "never"  # nothing selected here talks to Prefect


@dataclass(frozen=True)
class UpPlan:
    """What `up` does on a host, in order; every list holds local process names."""

    first: list[str]  # started at once: the first API server, and MLflow (slow) beside it
    await_remote_prefect: bool  # no local first server, but selected processes need one
    replicas: list[str]  # after the first API server answers (block types registered once)
    apply: Apply
    rest: list[str]  # after the apply: their first run must find the deployments
    migrate: bool  # scale profile: `prefect server database upgrade` before any server
    prepare_data: bool  # the holdout cut and the ledger schema, before their users start


def roles_of(settings: Settings) -> tuple[str, ...]:
    """Every role of the settings' profile, in start order."""
    return SCALE_ROLES if settings.scaled else EMBEDDED_ROLES


def parse_roles(text: str | None, settings: Settings) -> frozenset[str]:
    """`--only`'s comma-separated value (None: every role of the profile)."""
    known = roles_of(settings)
    if text is None:
        return frozenset(known)
    asked = [part.strip() for part in text.split(",") if part.strip()]
    for role in asked:
        if role in SCALE_ROLES and role not in known:
            raise RoleError(
                f"role {role!r} exists only in the scale profile; roles: {', '.join(known)}"
            )
        if role not in known:
            raise RoleError(f"unknown role {role!r}; roles: {', '.join(known)}")
    if not asked:
        raise RoleError(f"--only needs at least one role; roles: {', '.join(known)}")
    return frozenset(asked)


def role_of(name: str) -> str:
    """The role of a process name (`prefect-2` is a replica, `worker-2` a worker)."""
    service = topology.service_of(name)
    if service is topology.PREFECT_SERVER:
        return PREFECT if name == service.name else REPLICAS
    return ROLE_OF_SERVICE[service.name]


def local_names(settings: Settings, roles: Iterable[str]) -> list[str]:
    """This host's processes for `roles`, in start order."""
    chosen = set(roles)
    return [name for name in topology.service_names(settings) if role_of(name) in chosen]


def remote_roles(settings: Settings, roles: Iterable[str]) -> list[str]:
    """The profile's roles with processes that this host does not run, in start order."""
    chosen = set(roles)
    present = {role_of(name) for name in topology.service_names(settings)}
    return [role for role in roles_of(settings) if role in present and role not in chosen]


def up_plan(settings: Settings, roles: frozenset[str]) -> UpPlan:
    """The steps of `up` on a host running `roles`."""
    names = local_names(settings, roles)
    first = [n for n in names if n in (topology.PREFECT_SERVER.name, topology.MLFLOW_SERVER.name)]
    replicas = [n for n in names if role_of(n) == REPLICAS]
    if PREFECT in roles:
        apply = Apply.ALWAYS
    elif roles & NEEDS_PREFECT:
        apply = Apply.IF_MISSING
    else:
        apply = Apply.NEVER
    return UpPlan(
        first=first,
        await_remote_prefect=PREFECT not in roles and bool(roles & NEEDS_PREFECT),
        replicas=replicas,
        apply=apply,
        rest=[n for n in names if n not in first and n not in replicas],
        migrate=settings.scaled and PREFECT in roles,
        prepare_data=bool(roles & NEEDS_DATA),
    )


# -- what a home remembers -------------------------------------------------------------------
def roles_file(settings: Settings) -> Path:
    return settings.dirs.run / "roles"


def recorded_roles(settings: Settings) -> frozenset[str]:
    """The roles this home's last `up` ran (with those still running); all when none did."""
    try:
        text = roles_file(settings).read_text(encoding="utf-8")
    except FileNotFoundError:
        return frozenset(roles_of(settings))
    # A home switched profiles keeps only the roles the current profile has.
    kept = {role.strip() for role in text.split(",")} & set(roles_of(settings))
    return frozenset(kept) or frozenset(roles_of(settings))


def record_roles(settings: Settings, roles: Iterable[str]) -> None:
    """Remember `roles` (kept after `down`: they say what this host is for)."""
    ordered = [role for role in roles_of(settings) if role in set(roles)]
    roles_file(settings).write_text(",".join(ordered) + "\n", encoding="utf-8")
