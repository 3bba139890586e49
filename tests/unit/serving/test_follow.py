"""Shadow agreement counts, and what keeps the served model current: the refresher, the alias
check and the periodic writes, each with a registry that may be down."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from serving import follow
from serving.app import ServeState
from serving.models import ServedModels
from serving.shadow import ShadowTally
from tests.support.data import TIPS
from tests.support.fake_serving import ConstantModel, FakeSource

VERSIONS = {str(v): ConstantModel(str(v)) for v in range(1, 4)}


def state_of(source: FakeSource, *, shadow: bool = False) -> ServeState:
    return ServeState("m", TIPS, 10, ServedModels(source, shadow=shadow), ShadowTally())


# -- the tally ---------------------------------------------------------------------------------
def test_agreement_counts_rows_per_champion_challenger_pair() -> None:
    tally = ShadowTally()
    tally.record("1", "2", "run-2", np.array(["a", "b", "a"]), np.array(["a", "a", "a"]))
    tally.record("1", "2", "run-2", np.array(["b"]), np.array(["b"]))
    now = tally.current()
    assert (now.requests, now.rows, now.agreeing, now.rate) == (2, 4, 3, 0.75)
    tally.record("1", "3", "run-3", np.array([1, 0]), np.array([1, 1]))  # a new challenger
    now = tally.current()
    assert (now.challenger, now.requests, now.rows, now.rate) == ("3", 1, 2, 0.5)
    assert now.metrics() == {"shadow_agreement": 0.5, "shadow_rows": 2.0}


def test_only_a_grown_tally_is_logged_again() -> None:
    tally = ShadowTally()
    assert tally.unlogged() is None
    tally.record("1", "2", "run-2", np.array([1]), np.array([1]))
    first = tally.unlogged()
    tally.mark_logged(first)
    assert tally.unlogged() is None
    tally.record("1", "2", "run-2", np.array([1]), np.array([0]))
    assert tally.unlogged().rows == 2
    tally.mark_logged(first)  # a late mark of the older count does not hide the new rows
    assert tally.unlogged().rows == 2


# -- the refresher -----------------------------------------------------------------------------
def test_a_down_registry_is_logged_once_and_its_return_once(caplog) -> None:
    source = FakeSource(VERSIONS, "1")
    state = state_of(source)
    refresh = follow.Refresher(state)

    async def scenario() -> None:
        await refresh("start")
        source.down = True
        for _ in range(3):
            await refresh("alias check")
        source.down, source.champion_version = False, "2"
        await refresh("alias check")

    with caplog.at_level(logging.INFO, logger="serving.follow"):
        asyncio.run(scenario())
    messages = [r.getMessage() for r in caplog.records if r.name == "serving.follow"]
    assert len([m for m in messages if m.startswith("Registry unavailable")]) == 1
    assert messages[-1] == "The registry answers again (alias check)"
    assert state.models.current.champion.version == "2"


def test_the_alias_check_refreshes_on_its_own_clock() -> None:
    calls: list[str] = []

    async def refresh(why: str) -> None:
        calls.append(why)

    async def scenario() -> None:
        task = asyncio.create_task(follow.check_alias(refresh, every=0.01))
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(scenario())
    assert len(calls) >= 3 and set(calls) == {"alias check"}


# -- the periodic writes -------------------------------------------------------------------------
def test_the_shadow_agreement_goes_to_the_challengers_run_and_waits_out_a_down_registry(
    caplog,
) -> None:
    source = FakeSource(VERSIONS, "1")
    state = state_of(source, shadow=True)
    state.tally.record("1", "3", "run-3", np.array([1, 1]), np.array([1, 0]))
    source.down = True
    with caplog.at_level(logging.WARNING, logger="serving.follow"):
        asyncio.run(follow.log_shadow(state))
    assert source.logged == [] and "Could not log the shadow agreement" in caplog.text
    source.down = False
    asyncio.run(follow.log_shadow(state))
    asyncio.run(follow.log_shadow(state))  # nothing new: nothing logged twice
    assert source.logged == [("run-3", {"shadow_agreement": 0.5, "shadow_rows": 2.0}, 2)]


class CountingLog:
    def __init__(self) -> None:
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1


@pytest.mark.parametrize("shadow_every", [0.02, 100.0])
def test_the_log_is_flushed_every_interval_and_the_shadow_on_its_own(
    monkeypatch, shadow_every: float
) -> None:
    monkeypatch.setattr(follow, "FLUSH_SECONDS", 0.01)
    source = FakeSource(VERSIONS, "1")
    state = state_of(source)
    state.prediction_log = CountingLog()
    state.tally.record("1", "3", "run-3", np.array([1]), np.array([1]))

    async def scenario() -> None:
        task = asyncio.create_task(follow.write_periodically(state, shadow_every=shadow_every))
        await asyncio.sleep(0.15)
        task.cancel()

    asyncio.run(scenario())
    assert state.prediction_log.flushes >= 5
    assert len(source.logged) == (1 if shadow_every < 1 else 0)
