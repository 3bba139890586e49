"""The sensor-silent alert reaches alerts.urls: its send-notification action resolves to one
action per notification block `up` saved (none: do-nothing), in a form the server accepts."""

from __future__ import annotations

import uuid

import pytest

from arrivals.topology import automations_declared
from automations.apply import resolve_automation


@pytest.fixture
def definitions() -> dict[str, dict]:
    return {d["name"]: d for d in automations_declared()}


def test_one_notification_per_alert_block(definitions: dict[str, dict]) -> None:
    from prefect.server.events.actions import SendNotification

    blocks = [uuid.uuid4(), uuid.uuid4()]
    automation = resolve_automation(
        definitions["sensor-silent"], {}, heartbeat_seconds=30, notification_blocks=blocks
    )
    assert [a.type for a in automation.actions] == ["send-notification"] * 2
    assert [a.block_document_id for a in automation.actions] == blocks
    for action in automation.actions:
        assert action.subject == "Arrivals: the inbox sensor is silent"
        assert "arrivals up --detach" in action.body
        # The server validates the Jinja templates when it takes the automation.
        SendNotification.model_validate(action.model_dump(mode="json"))


def test_no_alert_blocks_means_the_alert_only_shows_in_prefect(
    definitions: dict[str, dict],
) -> None:
    automation = resolve_automation(definitions["sensor-silent"], {}, heartbeat_seconds=30)
    assert [a.type for a in automation.actions] == ["do-nothing"]


def test_the_retrain_trigger_never_notifies(definitions: dict[str, dict]) -> None:
    definition = definitions["retrain-on-arrival"]
    automation = resolve_automation(
        definition,
        {definition["deployment"]: uuid.uuid4()},
        notification_blocks=[uuid.uuid4()],
    )
    assert [a.type for a in automation.actions] == ["run-deployment"]
