"""The sensor-silent automation: a proactive trigger on the sensor's heartbeat events."""

from __future__ import annotations

import copy
from datetime import UTC, timedelta

import pytest

from arrivals.events_feed import format_event
from arrivals.topology import automations_declared
from automations.apply import resolve_automation
from automations.sensor import InboxSensor
from shared import events
from shared.settings import Settings
from tests.support.fakes import FakeEmitter


@pytest.fixture
def definition() -> dict:
    by_name = {d["name"]: d for d in automations_declared()}
    return by_name["sensor-silent"]


class _Counts:
    """The one ledger call a heartbeat makes."""

    def counts(self) -> dict[str, int]:
        return {"pending": 2}


def _sensor_events(settings: Settings, host: str) -> list[events.Event]:
    """What a real InboxSensor on `host` sends: a heartbeat, then a file's arrival."""
    recorder = FakeEmitter()
    sensor = InboxSensor(settings, _Counts(), recorder)  # type: ignore[arg-type]
    sensor.host = host
    sensor.heartbeat()
    arrival = events.Event(
        event=events.FILE_ARRIVED,
        resource={"prefect.resource.id": "inbox.file.0", "prefect.resource.name": "a.csv"},
        payload={},
        id=events.event_id("test", host),
    )
    return [*recorder.delivered, arrival]


def test_expects_the_heartbeat_the_sensor_emits(definition: dict, settings: Settings) -> None:
    """The Prefect server's own trigger matching (`EventTrigger.covers`) counts the
    heartbeat a real sensor sends, on any host, and nothing else the inbox emits."""
    from prefect.server.events.schemas.automations import EventTrigger
    from prefect.server.events.schemas.events import ReceivedEvent

    automation = resolve_automation(definition, {}, heartbeat_seconds=30)
    assert automation.trigger.posture == "Proactive"
    assert automation.trigger.threshold == 1
    trigger = EventTrigger.model_validate(automation.trigger.model_dump(mode="json"))
    for host in ("myhost", "build-7.example.org"):
        beat, arrival = _sensor_events(settings, host)
        assert beat.event == events.SENSOR_HEARTBEAT
        assert beat.payload == {"pending": 2, "watching": False}
        received = ReceivedEvent.model_validate(beat.to_json())
        assert trigger.covers(received), (beat.resource, definition["trigger"])
        assert not trigger.covers(ReceivedEvent.model_validate(arrival.to_json()))


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
    for definition in automations_declared():
        resolved = resolve_automation(
            definition,
            {definition.get("deployment", "-"): "00000000-0000-0000-0000-000000000001"},
            heartbeat_seconds=settings.sensor.heartbeat_seconds,
        )
        assert resolved.name == definition["name"]


def _fired(name: str) -> dict:
    """The `prefect.automation.triggered` event Prefect emits when automation `name` fires."""
    return {
        "id": "x",
        "occurred": "2026-11-26T18:25:31Z",
        "event": "prefect.automation.triggered",
        "resource": {
            "prefect.resource.id": "prefect.automation.1",
            "prefect.resource.name": name,
            "prefect.posture": "Proactive",
        },
    }


def test_its_firing_reads_as_an_alert(definition: dict) -> None:
    """The declared automation's own name gets the sensor hint; any other, the fallback."""
    line = format_event(_fired(definition["name"]), tz=UTC)
    assert line.startswith("18:25:31 ALERT      sensor-silent: no heartbeat from the inbox sensor")
    assert "`arrivals up --detach` restarts it" in line
    assert format_event(_fired("other-alert"), tz=UTC) == (
        "18:25:31 ALERT      other-alert: see the automation in the Prefect UI"
    )
