"""Roles per host: `--only` parsing, which processes each profile's roles are, what `up` does."""

from __future__ import annotations

import logging

import pytest

from arrivals import roles
from arrivals.cli import main
from arrivals.roles import Apply, RoleError
from shared.runtime_settings import ScaleSettings
from shared.settings import Settings


def scaled(settings: Settings, *, replicas: int = 2, workers: int = 2) -> Settings:
    return settings.model_copy(
        update={"profile": "scale", "scale": ScaleSettings(api_replicas=replicas, workers=workers)}
    )


def no_warm_start(settings: Settings) -> Settings:
    services = settings.services.model_copy(update={"warm_start": False})
    return settings.model_copy(update={"services": services})


# -- parsing ---------------------------------------------------------------------------------
def test_without_only_every_role_of_the_profile_is_selected(settings: Settings) -> None:
    embedded = {"prefect", "mlflow", "engine", "worker", "sensor", "serve"}
    assert roles.parse_roles(None, settings) == embedded
    assert roles.parse_roles(None, scaled(settings)) == {*embedded, "replicas", "services"}


def test_only_takes_a_comma_separated_list_spaces_and_repeats_allowed(settings: Settings) -> None:
    assert roles.parse_roles("engine, worker,sensor,worker", settings) == {
        "engine",
        "worker",
        "sensor",
    }


@pytest.mark.parametrize("text", ["bogus", "prefect,bogus", "workers", "Prefect"])
def test_an_unknown_role_is_named(settings: Settings, text: str) -> None:
    unknown = text.split(",")[-1]
    with pytest.raises(RoleError, match=f"unknown role '{unknown}'; roles: prefect, mlflow"):
        roles.parse_roles(text, settings)


@pytest.mark.parametrize("role", ["services", "replicas"])
def test_scale_roles_exist_only_in_the_scale_profile(settings: Settings, role: str) -> None:
    with pytest.raises(RoleError, match=f"'{role}' exists only in the scale profile"):
        roles.parse_roles(role, settings)
    assert roles.parse_roles(role, scaled(settings)) == {role}


@pytest.mark.parametrize("text", ["", ",", " , "])
def test_only_needs_a_role(settings: Settings, text: str) -> None:
    with pytest.raises(RoleError, match="at least one role"):
        roles.parse_roles(text, settings)


def test_up_with_an_unknown_role_exits_2_with_one_line_and_starts_nothing(
    settings: Settings, caplog
) -> None:
    with caplog.at_level(logging.ERROR, logger="arrivals"):
        assert main(["up", "--detach", "--only", "worker,sensr"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "unknown role 'sensr'; roles: prefect, mlflow, engine, worker, sensor, serve",
    ]
    # Refused before the home was prepared: no folders, no roles remembered, no process.
    assert not settings.dirs.inbox.exists()
    assert not roles.roles_file(settings).exists()
    assert list(settings.dirs.run.glob("*.pid")) == []


# -- which processes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("prefect", "prefect"),
        ("prefect-2", "replicas"),
        ("prefect-3", "replicas"),
        ("prefect-services", "services"),
        ("mlflow", "mlflow"),
        ("engine", "engine"),
        ("worker", "worker"),
        ("worker-3", "worker"),
        ("sensor", "sensor"),
    ],
)
def test_each_process_has_its_role(name: str, role: str) -> None:
    assert roles.role_of(name) == role


def test_local_processes_of_the_embedded_profile(settings: Settings) -> None:
    assert roles.local_names(settings, {"engine", "worker", "sensor"}) == [
        "engine",
        "worker",
        "sensor",
    ]
    assert roles.local_names(settings, {"mlflow", "prefect"}) == ["prefect", "mlflow"]
    assert roles.local_names(no_warm_start(settings), {"engine", "worker"}) == ["worker"]


def test_local_processes_of_the_scale_profile(settings: Settings) -> None:
    scale = scaled(settings, replicas=3, workers=3)
    assert roles.local_names(scale, {"prefect", "services"}) == ["prefect", "prefect-services"]
    assert roles.local_names(scale, {"replicas"}) == ["prefect-2", "prefect-3"]
    assert roles.local_names(scale, {"worker"}) == ["worker", "worker-2", "worker-3"]


def test_remote_roles_are_the_others_that_have_processes(settings: Settings) -> None:
    assert roles.remote_roles(settings, {"engine", "worker", "sensor", "serve"}) == [
        "prefect",
        "mlflow",
    ]
    # No warm start: no engine anywhere, so none elsewhere either.
    assert roles.remote_roles(no_warm_start(settings), {"prefect"}) == [
        "mlflow",
        "worker",
        "sensor",
        "serve",
    ]
    # One API server: no replicas to run anywhere.
    assert roles.remote_roles(scaled(settings, replicas=1), {"worker"}) == [
        "prefect",
        "services",
        "mlflow",
        "engine",
        "sensor",
        "serve",
    ]


# -- what `up` does --------------------------------------------------------------------------
def test_up_plan_of_one_host_is_todays_up(settings: Settings) -> None:
    plan = roles.up_plan(settings, roles.parse_roles(None, settings))
    assert plan == roles.UpPlan(
        first=["prefect", "mlflow"],
        await_remote_prefect=False,
        replicas=[],
        apply=Apply.ALWAYS,
        rest=["engine", "worker", "sensor", "serve"],
        migrate=False,
        prepare_data=True,
    )


def test_up_plan_of_the_servers_host(settings: Settings) -> None:
    plan = roles.up_plan(settings, frozenset({"prefect", "mlflow"}))
    assert (plan.first, plan.rest, plan.apply) == (["prefect", "mlflow"], [], Apply.ALWAYS)
    assert not plan.await_remote_prefect
    assert not plan.prepare_data  # no ledger writer, no retrain here: no holdout, no schema


def test_up_plan_of_the_workers_host_waits_for_prefect_and_applies_only_if_missing(
    settings: Settings,
) -> None:
    plan = roles.up_plan(settings, frozenset({"engine", "worker", "sensor"}))
    assert plan.first == []
    assert plan.await_remote_prefect
    assert plan.apply is Apply.IF_MISSING
    assert plan.rest == ["engine", "worker", "sensor"]
    assert plan.prepare_data


def test_up_plan_of_an_mlflow_only_host_never_touches_prefect(settings: Settings) -> None:
    plan = roles.up_plan(settings, frozenset({"mlflow"}))
    assert plan.first == ["mlflow"]
    assert not plan.await_remote_prefect
    assert plan.apply is Apply.NEVER


def test_up_plan_of_the_scale_profile(settings: Settings) -> None:
    scale = scaled(no_warm_start(settings))
    whole = roles.up_plan(scale, roles.parse_roles(None, scale))
    assert whole.first == ["prefect", "mlflow"]
    assert whole.replicas == ["prefect-2"]
    assert whole.rest == ["prefect-services", "worker", "worker-2", "sensor", "serve"]
    assert whole.migrate  # the first API server's host migrates, once, before any server
    replicas_only = roles.up_plan(scale, frozenset({"replicas"}))
    assert replicas_only.replicas == ["prefect-2"]
    assert replicas_only.await_remote_prefect  # after the first server registered block types
    assert not replicas_only.migrate
    assert replicas_only.apply is Apply.IF_MISSING


# -- what a home remembers -------------------------------------------------------------------
def test_a_home_that_never_ran_up_counts_every_role_as_local(settings: Settings) -> None:
    assert roles.recorded_roles(settings) == roles.parse_roles(None, settings)


def test_recorded_roles_round_trip_in_profile_order(settings: Settings) -> None:
    settings.dirs.run.mkdir(parents=True)
    roles.record_roles(settings, {"sensor", "worker", "engine"})
    assert roles.roles_file(settings).read_text() == "engine,worker,sensor\n"
    assert roles.recorded_roles(settings) == {"engine", "worker", "sensor"}


def test_recorded_roles_of_another_profile_are_dropped(settings: Settings) -> None:
    settings.dirs.run.mkdir(parents=True)
    roles.record_roles(scaled(settings), {"services", "worker"})
    assert roles.recorded_roles(settings) == {"worker"}
    roles.record_roles(scaled(settings), {"services"})
    assert roles.recorded_roles(settings) == roles.parse_roles(None, settings)
