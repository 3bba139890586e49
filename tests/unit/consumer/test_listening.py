"""A retrain run keeps taking arrivals while its trigger ignores them (consumer.retrain)."""

from __future__ import annotations

from datetime import UTC, datetime

import prefect.types._datetime
import pytest

from arrivals.topology import RETRAIN_DEPLOYMENT, automations_declared, deployment_specs
from consumer.retrain import ANNOUNCE_MARGIN_SECONDS, await_arrival, listen_until
from shared.settings import load_settings


class FakeLedger:
    """Claimable once the clock reaches `claimable_from`; counts the checks."""

    def __init__(self, clock, claimable_from: float | None) -> None:
        self.clock = clock
        self.claimable_from = claimable_from
        self.checks = 0

    def has_claimable(self) -> bool:
        self.checks += 1
        return self.claimable_from is not None and self.clock() >= self.claimable_from


def test_listen_until_the_last_window_closes() -> None:
    # The triggering event at 100 and two claimed files announced at 103 and 101.
    assert listen_until([100.0, 103.0, 101.0], 5.0) == 108.0 + ANNOUNCE_MARGIN_SECONDS


@pytest.mark.parametrize(("announced", "window"), [([], 5.0), ([100.0], 0.0)])
def test_no_event_or_no_window_means_no_listening(announced: list[float], window: float) -> None:
    assert listen_until(announced, window) is None


def test_await_arrival_returns_as_soon_as_a_file_is_claimable(clock) -> None:
    ledger = FakeLedger(clock, claimable_from=clock() + 0.5)
    assert await_arrival(ledger, clock() + 5, poll_seconds=0.2, clock=clock, sleep=clock.advance)
    assert clock() == pytest.approx(1_000.6)  # the first poll after 0.5 s, not the deadline


def test_await_arrival_gives_up_at_the_deadline(clock) -> None:
    ledger = FakeLedger(clock, claimable_from=None)
    deadline = clock() + 1.0
    assert not await_arrival(ledger, deadline, poll_seconds=0.3, clock=clock, sleep=clock.advance)
    assert clock() == pytest.approx(deadline)  # the last sleep is cut to the deadline
    assert ledger.checks == 5  # at 0, 0.3, 0.6, 0.9 and 1.0 s


def test_await_arrival_without_a_deadline_checks_once(clock) -> None:
    assert await_arrival(FakeLedger(clock, clock()), None, clock=clock, sleep=clock.advance)
    ledger = FakeLedger(clock, claimable_from=None)
    assert not await_arrival(ledger, None, clock=clock, sleep=clock.advance)
    assert ledger.checks == 1


def test_the_retrain_deployment_listens_as_long_as_its_trigger_ignores_arrivals() -> None:
    definitions = automations_declared()
    (definition,) = [d for d in definitions if d.get("deployment") == RETRAIN_DEPLOYMENT]
    (spec,) = [s for s in deployment_specs(load_settings()) if s.single_flight]
    assert definition["trigger"]["posture"] == "Reactive"
    window = spec.parameters["trigger_window_seconds"]
    assert window == float(definition["trigger"]["within"]) > 0


def test_the_automations_event_time_is_a_valid_retrain_parameter() -> None:
    """The action renders `{{ event.occurred | string }}`: str() of Prefect's DateTime."""
    from consumer.flows import retrain

    occurred = prefect.types._datetime.now("UTC")
    definitions = automations_declared()
    (definition,) = [d for d in definitions if d.get("deployment") == RETRAIN_DEPLOYMENT]
    assert definition["actions"][0]["parameters"]["event_occurred"] == (
        "{{ event.occurred | string }}"
    )
    parameters = retrain.validate_parameters({"event_occurred": str(occurred)})
    assert parameters["event_occurred"] == occurred.astimezone(UTC)
    assert isinstance(parameters["event_occurred"], datetime)
