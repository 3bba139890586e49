"""The retrain-on-arrival automation: declared in YAML, resolved to a Prefect automation."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta

import pytest

from arrivals.topology import RETRAIN_DEPLOYMENT, automations_declared, deployment_specs
from automations.apply import resolve_automation
from shared import events
from shared.settings import Settings


@pytest.fixture
def definition() -> dict:
    by_name = {d["name"]: d for d in automations_declared()}
    assert "retrain-on-arrival" in by_name
    return by_name["retrain-on-arrival"]


def test_definition_triggers_only_on_arrivals(definition: dict) -> None:
    trigger = definition["trigger"]
    assert trigger["expect"] == [events.FILE_ARRIVED]
    # A short coalescing window: it must stay shorter than a retrain run lives (> 5 s here),
    # or an arrival ignored by the window could miss the run's last claim.
    assert 0 < trigger["within"] <= 5
    assert trigger["posture"] == "Reactive"
    # The resource pattern matches what the sensor announces.
    pattern = trigger["match"]["prefect.resource.id"]
    assert pattern.endswith("*")
    assert events.file_resource_id("ab" * 32).startswith(pattern.rstrip("*"))
    # The retrain's own events must never loop back into the trigger.
    for own in (events.VERSION_REGISTERED, events.CHAMPION_PROMOTED, events.FILE_REJECTED):
        assert own not in trigger["expect"]


def test_definition_names_a_declared_deployment(definition: dict, settings: Settings) -> None:
    assert definition["deployment"] == RETRAIN_DEPLOYMENT
    assert RETRAIN_DEPLOYMENT in {spec.full_name for spec in deployment_specs(settings)}


def test_deployment_name_matches_the_retrain_flow(definition: dict) -> None:
    from consumer.flows import retrain

    assert definition["deployment"] == f"{retrain.name}/retrain-on-arrival"


def test_resolve_automation_maps_the_deployment_to_its_id(definition: dict) -> None:
    from prefect.events.schemas.automations import AutomationCore

    deployment_id = uuid.uuid4()
    other_id = uuid.uuid4()
    before = copy.deepcopy(definition)
    automation = resolve_automation(
        definition,
        {definition["deployment"]: deployment_id, "producer/producer": other_id},
    )
    assert isinstance(automation, AutomationCore)
    AutomationCore.model_validate(automation.model_dump())  # round-trips through the schema
    assert automation.name == "retrain-on-arrival"
    assert automation.enabled

    (action,) = automation.actions
    assert action.type == "run-deployment"
    assert action.deployment_id == deployment_id
    assert set(action.parameters) == {"sha256", "event_id", "event_occurred"}
    assert "event.payload.sha256" in action.parameters["sha256"]

    trigger = automation.trigger
    assert trigger.expect == {events.FILE_ARRIVED}
    assert timedelta(0) < trigger.within <= timedelta(seconds=5)
    assert trigger.threshold == 1
    assert definition == before, "resolving must not change the declared definition"


def test_each_resolution_uses_the_id_it_is_given(definition: dict) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    resolved = [resolve_automation(definition, {definition["deployment"]: i}) for i in ids]
    assert [a.actions[0].deployment_id for a in resolved] == ids
