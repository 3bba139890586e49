"""A flow run whose process died is marked Crashed after missed heartbeats (soak finding:
a dead retrain held the single-flight slot and every later retrain was cancelled)."""

from __future__ import annotations

from datetime import timedelta

from arrivals.environment import FLOW_HEARTBEAT_SECONDS, prefect_env
from arrivals.topology import automations_declared
from automations.apply import resolve_automation
from shared.settings import Settings


def test_silent_flow_runs_are_crashed_after_three_missed_heartbeats(settings: Settings) -> None:
    (definition,) = [d for d in automations_declared() if d["name"] == "crash-silent-runs"]
    automation = resolve_automation(definition, {}, heartbeat_seconds=30)
    trigger = automation.trigger
    assert trigger.posture == "Proactive"
    # From the run's start, not only its first beat: a run can die before it beats once,
    # even before it runs (the deployment's slot is taken at Pending).
    assert trigger.after == {
        "prefect.flow-run.Pending",
        "prefect.flow-run.Running",
        "prefect.flow-run.heartbeat",
    }
    # Running ends the Pending window and opens its own, as each beat does.
    assert "prefect.flow-run.Running" in trigger.expect
    # Each run on its own clock, and any end of the run (or a beat) keeps it from firing.
    assert trigger.for_each == {"prefect.resource.id"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed"} <= trigger.expect
    assert {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"} <= trigger.expect
    assert trigger.within == timedelta(seconds=3 * FLOW_HEARTBEAT_SECONDS)
    (action,) = automation.actions
    assert action.type == "change-flow-run-state" and action.state == "CRASHED"
    # The runs beat at the interval the window counts on (Prefect's default is 180 s).
    assert prefect_env(settings)["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(FLOW_HEARTBEAT_SECONDS)


def test_up_rewrites_an_automation_only_when_its_definition_changed() -> None:
    """Every write restarts a proactive trigger's window: an `up` healing a service every
    half minute kept crash-silent-runs from firing (soak finding)."""
    from uuid import uuid4

    from prefect.events.schemas.automations import Automation

    from automations.apply import unchanged

    deployments = {"retrain/retrain-on-arrival": uuid4(), "produce-batch/producer": uuid4()}
    for definition in automations_declared():
        wanted = resolve_automation(definition, deployments, heartbeat_seconds=30)
        stored = Automation.model_validate_json(
            Automation(id=uuid4(), **wanted.model_dump()).model_dump_json()
        )
        again = resolve_automation(definition, deployments, heartbeat_seconds=30)
        assert unchanged(stored, again), definition["name"]
        assert not unchanged(stored, again.model_copy(update={"description": "another"}))
        slower = resolve_automation(definition, deployments, heartbeat_seconds=60)
        if "within_heartbeats" in definition["trigger"]:
            assert not unchanged(stored, slower), "a new interval is written"


def test_an_automation_read_back_with_its_sets_in_another_order_is_unchanged() -> None:
    """The server lists a trigger's `after` and `expect` in its own order; as JSON lists,
    equal sets compared unequal in some processes, and `up` rewrote the automation."""
    from itertools import permutations
    from uuid import uuid4

    from prefect.events.schemas.automations import Automation

    from automations.apply import unchanged

    (definition,) = [d for d in automations_declared() if d["name"] == "crash-silent-runs"]
    wanted = resolve_automation(definition, {}, heartbeat_seconds=30)
    stored = Automation(id=uuid4(), **wanted.model_dump()).model_dump(mode="json")
    for after in permutations(stored["trigger"]["after"]):
        for shift in range(len(stored["trigger"]["expect"])):
            expect = stored["trigger"]["expect"][shift:] + stored["trigger"]["expect"][:shift]
            read_back = Automation.model_validate(
                {**stored, "trigger": {**stored["trigger"], "after": after, "expect": expect}}
            )
            assert unchanged(read_back, wanted), (after, expect)
    fewer = {**stored["trigger"], "after": stored["trigger"]["after"][1:]}
    assert not unchanged(Automation.model_validate({**stored, "trigger": fewer}), wanted)
