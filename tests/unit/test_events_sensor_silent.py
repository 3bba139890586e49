"""The sensor-silent automation: a proactive trigger on the sensor's heartbeat events."""

from __future__ import annotations

import copy
from datetime import UTC, timedelta

import pytest

from arrivals.events_feed import ALERT_HINTS, format_event
from automations.apply import automation_definitions, resolve_automation
from shared import events


@pytest.fixture
def definition() -> dict:
    by_name = {d["name"]: d for d in automation_definitions()}
    return by_name["sensor-silent"]


def test_expects_the_heartbeat_the_sensor_emits(definition: dict) -> None:
    trigger = definition["trigger"]
    assert trigger["posture"] == "Proactive"
    assert trigger["expect"] == [events.SENSOR_HEARTBEAT]
    assert trigger["threshold"] == 1
    pattern = trigger["match"]["prefect.resource.id"]
    assert pattern == "inbox.sensor.*"
    # The sensor's heartbeat resource id is inbox.sensor.<host> (automations/sensor.py).
    assert "inbox.sensor.myhost".startswith(pattern.rstrip("*"))


def test_window_is_a_few_heartbeat_intervals(definition: dict) -> None:
    before = copy.deepcopy(definition)
    automation = resolve_automation(definition, {}, heartbeat_seconds=30)
    assert automation.trigger.within == timedelta(seconds=90)
    assert automation.trigger.posture == "Proactive"
    assert [a.type for a in automation.actions] == ["do-nothing"]
    assert automation.enabled
    assert definition == before, "resolving must not change the declared definition"
    # Prefect refuses proactive windows under 10 s; a tiny interval still resolves.
    assert resolve_automation(definition, {}, heartbeat_seconds=1).trigger.within == timedelta(
        seconds=10
    )


def test_window_needs_the_heartbeat_interval(definition: dict) -> None:
    with pytest.raises(ValueError, match="within_heartbeats"):
        resolve_automation(definition, {})


def test_every_definition_resolves_with_the_shipped_settings(settings) -> None:
    for definition in automation_definitions():
        resolved = resolve_automation(
            definition,
            {definition.get("deployment", "-"): "00000000-0000-0000-0000-000000000001"},
            heartbeat_seconds=settings.sensor.heartbeat_seconds,
        )
        assert resolved.name == definition["name"]


def test_its_firing_reads_as_an_alert() -> None:
    assert "sensor-silent" in ALERT_HINTS
    fired = {
        "id": "x",
        "occurred": "2026-11-26T18:25:31Z",
        "event": "prefect.automation.triggered",
        "resource": {
            "prefect.resource.id": "prefect.automation.1",
            "prefect.resource.name": "other-alert",
            "prefect.posture": "Proactive",
        },
    }
    assert format_event(fired, tz=UTC) == (
        "18:25:31 ALERT      other-alert: see the automation in the Prefect UI"
    )
