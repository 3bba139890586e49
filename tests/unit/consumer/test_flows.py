"""The retrain flow's round loop (consumer.flows.run_rounds) and its parameters, with the
rig's ledger and plain functions in place of the Prefect tasks."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
import pytest

from consumer import flows
from consumer import retrain as stages
from consumer.context import RetrainContext
from consumer.flows import RoundSteps, run_rounds
from shared.ledger import FileRecord, FileState
from shared.settings import Settings
from tests.support.rigs import RetrainRig


class RoundFailed(RuntimeError):
    """A round that fails (the registry down, a bug): the run must give its files back."""


class Rounds:
    """A stand-in for the round task: notes what each round was given and finishes its files
    (trained, no model); may drop more files (arrivals during the round) or fail."""

    def __init__(
        self, rig: RetrainRig, *, drop_each_round: bool = False, fail: bool = False
    ) -> None:
        self.rig = rig
        self.drop_each_round = drop_each_round
        self.fail = fail
        self.given: list[tuple[int, list[str]]] = []

    def __call__(self, ctx: RetrainContext, claimed: list[FileRecord], round_no: int) -> dict:
        self.given.append((round_no, sorted(r.name for r in claimed)))
        if self.fail:
            raise RoundFailed("round failed")
        ctx.ledger.mark_trained({r.sha256: 1 for r in claimed}, run_id=ctx.run_id, version=None)
        if self.drop_each_round:
            _drop(self.rig, f"late-{round_no}.csv")
        return {"round": round_no}

    def steps(self) -> RoundSteps:
        return RoundSteps(claim=stages.claim, train_round=self)


@pytest.fixture
def rig(settings: Settings):
    rig = RetrainRig(settings)
    yield rig
    rig.ledger.close()


def _drop(rig: RetrainRig, name: str) -> str:
    """A small distinct file, recorded and announced as the sensor does."""
    return rig.drop(name, pd.DataFrame({"name": [name], "value": [len(name)]}))


def _run(rig: RetrainRig, rounds: Rounds, *, rebuild: bool = False, ctx=None) -> list[dict]:
    return run_rounds(
        ctx or rig.context("run-under-test"),
        rounds.steps(),
        rebuild=rebuild,
        announced=[],
        window_seconds=0.0,
        trigger="a test",
    )


# -- the round loop -----------------------------------------------------------------------
def test_the_run_keeps_taking_what_arrived_during_its_last_round(rig: RetrainRig) -> None:
    _drop(rig, "a.csv")
    _drop(rig, "b.csv")
    rounds = Rounds(rig, drop_each_round=True)
    rig.settings = rig.settings.model_copy(
        update={"consumer": rig.settings.consumer.model_copy(update={"max_rounds_per_run": 3})}
    )
    summaries = _run(rig, rounds)
    assert rounds.given == [
        (1, ["a.csv", "b.csv"]),
        (2, ["late-1.csv"]),
        (3, ["late-2.csv"]),
    ]
    assert summaries == [{"round": 1}, {"round": 2}, {"round": 3}]
    # The cap stops the run; what arrived in its last round waits for the next run.
    (left,) = [r for r in rig.ledger.files() if r.name == "late-3.csv"]
    assert left.state == FileState.ANNOUNCED


def test_nothing_claimable_and_no_window_means_no_round(rig: RetrainRig) -> None:
    rounds = Rounds(rig)
    assert _run(rig, rounds) == []
    assert rounds.given == []


def test_a_rebuild_trains_once_with_no_new_file(rig: RetrainRig) -> None:
    rounds = Rounds(rig)
    assert _run(rig, rounds, rebuild=True) == [{"round": 1}]
    assert rounds.given == [(1, [])]


def test_a_rebuild_with_new_files_is_just_their_round(rig: RetrainRig) -> None:
    _drop(rig, "a.csv")
    rounds = Rounds(rig)
    _run(rig, rounds, rebuild=True)
    assert rounds.given == [(1, ["a.csv"])]  # no extra empty round


def test_a_failed_round_gives_the_runs_files_back_and_fails_the_run(rig: RetrainRig) -> None:
    held = _drop(rig, "held.csv")
    rig.ledger.claim_pending("live-run", ttl_seconds=300)  # another run is training it
    mine = _drop(rig, "mine.csv")
    with pytest.raises(RoundFailed):
        _run(rig, Rounds(rig, fail=True))
    assert rig.ledger.get(mine).state == FileState.ANNOUNCED  # given back: the next run's
    assert (rig.ledger.get(held).state, rig.ledger.get(held).claimed_by) == (
        FileState.CLAIMED,
        "live-run",  # not this run's to give back
    )


# -- the flow's parameters ----------------------------------------------------------------
@pytest.fixture
def flow_on_rig(rig: RetrainRig, monkeypatch: pytest.MonkeyPatch) -> Rounds:
    """`flows.retrain.fn` on the rig: its context, and plain functions for the tasks."""
    rounds = Rounds(rig)
    opened: list[str | None] = []

    def open_run(event_id: str | None) -> RetrainContext:
        opened.append(event_id)
        ctx = rig.context("flow-run")
        ctx.trigger_event_id = event_id
        return ctx

    monkeypatch.setattr(flows, "open_run", open_run)
    monkeypatch.setattr(flows, "TASK_STEPS", rounds.steps())
    rounds.opened = opened  # type: ignore[attr-defined]
    return rounds


def test_a_forged_event_naming_a_trained_file_trains_nothing(
    rig: RetrainRig, flow_on_rig: Rounds
) -> None:
    """The event's sha256 names the trigger only: the ledger decides what a run trains."""
    sha = _drop(rig, "a.csv")
    rig.ledger.claim_pending("earlier-run", ttl_seconds=300)
    rig.ledger.mark_trained({sha: 1}, run_id="earlier-run", version="1")
    before = rig.ledger.get(sha)

    result = flows.retrain.fn(
        sha256=sha,
        event_id="forged",
        event_occurred=datetime.now(UTC),
        trigger_window_seconds=0.0,
    )

    assert result == {"rounds": [], "trigger": sha}
    assert flow_on_rig.given == []
    assert rig.ledger.get(sha) == before  # not claimed, not trained again
    assert flow_on_rig.opened == ["forged"]  # type: ignore[attr-defined]


def test_a_forged_event_trains_what_the_ledger_announced_not_what_it_names(
    rig: RetrainRig, flow_on_rig: Rounds
) -> None:
    announced = _drop(rig, "announced.csv")
    forged_sha = "f" * 64  # content the ledger never saw

    result = flows.retrain.fn(sha256=forged_sha, event_id="forged")

    assert flow_on_rig.given == [(1, ["announced.csv"])]
    assert result == {"rounds": [{"round": 1}], "trigger": forged_sha}
    assert rig.ledger.get(forged_sha) is None
    assert rig.ledger.get(announced).claimed_by == "flow-run"


def test_the_event_time_opens_the_listening_window(rig: RetrainRig, flow_on_rig: Rounds) -> None:
    """The trigger's time plus its window: how long a run waits for late arrivals."""
    started = time.time()
    flows.retrain.fn(
        sha256=None,
        event_occurred=datetime.fromtimestamp(started - 0.9, UTC),
        trigger_window_seconds=0.2,
    )
    waited = time.time() - started
    # listen_until: occurred + window + margin (1 s) = started + 0.3 s.
    assert 0.25 <= waited < 5.0
    assert flow_on_rig.given == []


def test_a_forged_event_dated_in_the_future_does_not_hold_the_run_open(
    rig: RetrainRig, flow_on_rig: Rounds, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its `occurred` counts as now: the run listens one window, not until that date."""
    waited_until: list[float | None] = []

    def await_arrival(ledger, until: float | None) -> bool:
        waited_until.append(until)
        return False  # nothing arrived

    monkeypatch.setattr(stages, "await_arrival", await_arrival)
    started = time.time()
    flows.retrain.fn(
        sha256="f" * 64,
        event_occurred=datetime.fromtimestamp(started + 365 * 86400, UTC),
        trigger_window_seconds=5.0,
    )
    (until,) = waited_until
    assert started + 5.0 < until <= time.time() + 5.0 + stages.ANNOUNCE_MARGIN_SECONDS
    assert flow_on_rig.given == []
