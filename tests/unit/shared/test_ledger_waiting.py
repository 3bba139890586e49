"""Files a run could not store (the data folder full): held to the run's end, then given back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.ledger import WAITING_FOR_SPACE, FileState, Ledger

NOTE = f"{WAITING_FOR_SPACE}: /d is full (no space left on device writing accepted/x)"


@pytest.fixture
def ledger(tmp_path: Path, clock) -> Iterator[Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", clock=clock)
    yield ledger
    ledger.close()


def announced(ledger: Ledger, sha: str) -> None:
    arrival = ledger.record_arrival(
        name=f"{sha[:4]}.csv", path=f"/inbox/{sha[:4]}.csv", size=1, sha256=sha, detected_via="push"
    )
    ledger.mark_announced(arrival.id)


def test_only_this_runs_waiting_files_are_given_back_to_the_claimer_before(ledger: Ledger) -> None:
    for sha in ("a" * 64, "b" * 64, "c" * 64):
        announced(ledger, sha)
    ledger.claim_pending("dead-run", ttl_seconds=60)
    ledger.release_claims("dead-run")  # it died: its files came back, noting who held them
    ledger.claim_pending("run-1", ttl_seconds=60)
    ledger.set_note("a" * 64, NOTE)
    ledger.set_note("b" * 64, "accepted 9 of 10 rows")  # a note, but not a wait
    assert ledger.waiting_for_space() == 1

    assert ledger.release_waiting("run-2") == 0, "not that run's"
    assert ledger.release_waiting("run-1") == 1
    waiting = ledger.get("a" * 64)
    assert (waiting.state, waiting.reason) == (FileState.ANNOUNCED, NOTE)
    assert ledger.has_claimable()
    # run-1 left nothing to undo; the dead run's partial work is still the next claimer's.
    assert waiting.claimed_by == "dead-run"
    assert ledger.get("b" * 64).state == FileState.CLAIMED
    assert ledger.waiting_for_space() == 1, "still pending, still waiting"

    (again,) = ledger.claim_pending("run-3", ttl_seconds=60)
    assert (again.sha256, again.previous_claimed_by) == ("a" * 64, "dead-run")
    ledger.set_note("a" * 64, None)
    ledger.mark_trained({"a" * 64: 1}, run_id="run-3", version="1")
    assert ledger.waiting_for_space() == 0
    assert ledger.get("a" * 64).reason is None
