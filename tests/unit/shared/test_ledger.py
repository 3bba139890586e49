"""The ledger: arrivals, announcements, claims and outcomes, on SQLite under tmp_path."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.ledger import ClaimLost, Disposition, FileState, Ledger

TTL = 60.0


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'ledger.db'}"


@pytest.fixture
def ledger(url: str, clock) -> Iterator[Ledger]:
    ledger = Ledger(url, clock=clock)
    yield ledger
    ledger.close()


def arrive(ledger: Ledger, name: str, content: str | None = None, *, folder: str = "/inbox"):
    return ledger.record_arrival(
        name=name,
        path=f"{folder}/{name}",
        size=len(content or name),
        sha256=sha(content or name),
        detected_via="scan",
    )


def announced(ledger: Ledger, name: str, content: str | None = None) -> str:
    arrival = arrive(ledger, name, content)
    assert arrival is not None
    ledger.mark_announced(arrival.id)
    return arrival.sha256


def test_creates_the_database_folder(url: str, tmp_path: Path) -> None:
    ledger = Ledger(url)
    try:
        assert (tmp_path / "db" / "ledger.db").is_file()
        assert ledger.files() == [] and ledger.arrivals() == []
    finally:
        ledger.close()


def test_new_arrival_is_recorded_as_detected(ledger: Ledger, clock) -> None:
    arrival = arrive(ledger, "a.csv", "alpha")
    assert arrival is not None
    assert arrival.disposition == Disposition.NEW
    assert arrival.duplicate_of is None
    assert arrival.announced_at is None
    assert arrival.detected_at == clock.now
    record = ledger.get(sha("alpha"))
    assert record is not None
    assert record.state == FileState.DETECTED
    assert record.name == "a.csv"
    assert record.stored_path == "/inbox/a.csv"
    assert [a.id for a in ledger.unannounced()] == [arrival.id]


def test_same_content_new_name_is_a_duplicate_of_the_first_name(ledger: Ledger) -> None:
    first = arrive(ledger, "a.csv", "alpha")
    second = arrive(ledger, "copy of a.csv", "alpha")
    assert first is not None and second is not None
    assert second.disposition == Disposition.DUPLICATE
    assert second.duplicate_of == "a.csv"
    assert second.id != first.id
    assert len(ledger.files()) == 1, "one content, one file row"
    pending = ledger.unannounced()
    assert [(a.name, a.duplicate_of) for a in pending] == [
        ("a.csv", None),
        ("copy of a.csv", "a.csv"),
    ]
    assert ledger.counts()["duplicate"] == 1


def test_same_content_same_path_while_pending_is_not_a_new_arrival(ledger: Ledger) -> None:
    assert arrive(ledger, "a.csv", "alpha") is not None
    assert arrive(ledger, "a.csv", "alpha") is None
    ledger.mark_announced(ledger.arrivals()[0].id)
    assert arrive(ledger, "a.csv", "alpha") is None
    assert len(ledger.arrivals()) == 1
    assert ledger.counts()["duplicate"] == 0


def test_same_path_after_training_is_a_duplicate(ledger: Ledger) -> None:
    digest = announced(ledger, "a.csv", "alpha")
    ledger.claim_pending("run-1", ttl_seconds=TTL)
    ledger.mark_trained({digest: 10}, run_id="run-1", version="1")
    again = arrive(ledger, "a.csv", "alpha")
    assert again is not None
    assert again.disposition == Disposition.DUPLICATE
    assert ledger.get(digest).state == FileState.TRAINED  # the file itself keeps its outcome


def test_mark_announced_moves_detected_to_announced(ledger: Ledger, clock) -> None:
    arrival = arrive(ledger, "a.csv", "alpha")
    clock.advance(5)
    ledger.mark_announced(arrival.id)
    record = ledger.get(arrival.sha256)
    assert record.state == FileState.ANNOUNCED
    assert record.announced_at == clock.now
    assert ledger.unannounced() == []
    assert ledger.arrivals()[0].announced_at == clock.now


def test_announcing_a_duplicate_does_not_reopen_a_finished_file(ledger: Ledger) -> None:
    digest = announced(ledger, "a.csv", "alpha")
    ledger.claim_pending("run-1", ttl_seconds=TTL)
    ledger.mark_trained({digest: 3}, run_id="run-1", version="1")
    dup = arrive(ledger, "b.csv", "alpha")
    ledger.mark_announced(dup.id)
    assert ledger.get(digest).state == FileState.TRAINED
    assert ledger.claim_pending("run-2", ttl_seconds=TTL) == []


def test_move_arrival_records_the_new_path(ledger: Ledger) -> None:
    arrive(ledger, "a.csv", "alpha")
    dup = arrive(ledger, "b.csv", "alpha")
    ledger.move_arrival(dup.id, "/archive/duplicates/b.csv")
    paths = {a.name: a.path for a in ledger.arrivals()}
    assert paths == {"a.csv": "/inbox/a.csv", "b.csv": "/archive/duplicates/b.csv"}


def test_only_announced_files_are_claimed_and_only_once(ledger: Ledger) -> None:
    one = announced(ledger, "one.csv")
    two = announced(ledger, "two.csv")
    arrive(ledger, "not-yet-announced.csv")
    claimed = ledger.claim_pending("run-1", ttl_seconds=TTL)
    assert {r.sha256 for r in claimed} == {one, two}
    assert all(r.state == FileState.CLAIMED and r.claimed_by == "run-1" for r in claimed)
    assert ledger.claim_pending("run-2", ttl_seconds=TTL) == []
    assert ledger.get(sha("not-yet-announced.csv")).state == FileState.DETECTED


def test_has_claimable_agrees_with_claim_pending(ledger: Ledger, clock) -> None:
    assert not ledger.has_claimable()
    arrive(ledger, "not-yet-announced.csv")
    assert not ledger.has_claimable()
    announced(ledger, "a.csv")
    assert ledger.has_claimable()
    assert len(ledger.claim_pending("run", ttl_seconds=TTL)) == 1
    assert not ledger.has_claimable()
    clock.advance(TTL + 1)  # the claim expired: a killed run's file is claimable again
    assert ledger.has_claimable()


def test_claims_come_oldest_first(ledger: Ledger, clock) -> None:
    names = ["c.csv", "a.csv", "b.csv"]
    for name in names:
        announced(ledger, name)
        clock.advance(1)
    assert [r.name for r in ledger.claim_pending("run", ttl_seconds=TTL)] == names


def test_expired_claim_is_claimable_again_after_ttl(ledger: Ledger, clock) -> None:
    digest = announced(ledger, "a.csv")
    assert len(ledger.claim_pending("crashed-run", ttl_seconds=TTL)) == 1
    clock.advance(TTL - 1)
    assert ledger.claim_pending("early-run", ttl_seconds=TTL) == []
    clock.advance(2)
    reclaimed = ledger.claim_pending("late-run", ttl_seconds=TTL)
    assert [r.sha256 for r in reclaimed] == [digest]
    assert reclaimed[0].claimed_by == "late-run"


def test_finishing_a_file_claimed_by_another_run_raises_claim_lost(ledger: Ledger, clock) -> None:
    digest = announced(ledger, "a.csv")
    ledger.claim_pending("slow-run", ttl_seconds=TTL)
    clock.advance(TTL + 1)
    ledger.claim_pending("new-run", ttl_seconds=TTL)
    with pytest.raises(ClaimLost):
        ledger.mark_trained({digest: 5}, run_id="slow-run", version="1")
    with pytest.raises(ClaimLost):
        ledger.mark_rejected(digest, run_id="slow-run", reason="late", path="/q/a.csv")
    ledger.mark_trained({digest: 5}, run_id="new-run", version="2")
    record = ledger.get(digest)
    assert record.state == FileState.TRAINED
    assert record.model_version == "2"


def test_claim_lost_rolls_back_the_whole_batch(ledger: Ledger) -> None:
    mine = announced(ledger, "mine.csv")
    ledger.claim_pending("run-1", ttl_seconds=TTL)
    with pytest.raises(ClaimLost):
        ledger.mark_trained({mine: 3, sha("never-claimed.csv"): 4}, run_id="run-1", version="1")
    assert ledger.get(mine).state == FileState.CLAIMED, "no partial outcome"


def test_release_claims_gives_files_back(ledger: Ledger) -> None:
    announced(ledger, "a.csv")
    announced(ledger, "b.csv")
    ledger.claim_pending("failed-run", ttl_seconds=TTL)
    assert ledger.release_claims("failed-run") == 2
    assert ledger.release_claims("failed-run") == 0
    assert {r.state for r in ledger.files()} == {FileState.ANNOUNCED}
    assert len(ledger.claim_pending("next-run", ttl_seconds=TTL)) == 2


def test_outcomes_and_counts(ledger: Ledger, clock) -> None:
    good_a = announced(ledger, "a.csv")
    good_b = announced(ledger, "b.csv")
    bad = announced(ledger, "bad.csv")
    arrive(ledger, "a-copy.csv", "a.csv")  # duplicate of a.csv's content
    arrive(ledger, "waiting.csv")  # detected, not announced
    ledger.claim_pending("run-1", ttl_seconds=TTL)
    assert ledger.counts() == {
        "pending": 4,
        "unannounced": 1,
        "trained": 0,
        "rejected": 0,
        "duplicate": 1,
        "retracted": 0,
        "suspect": 0,
    }

    clock.advance(3)
    ledger.mark_rejected(bad, run_id="run-1", reason="column tip: bad", path="/q/bad.csv")
    ledger.mark_trained({good_a: 10, good_b: 12}, run_id="run-1", version="7")
    assert ledger.counts() == {
        "pending": 1,
        "unannounced": 1,
        "trained": 2,
        "rejected": 1,
        "duplicate": 1,
        "retracted": 0,
        "suspect": 0,
    }

    rejected = ledger.get(bad)
    assert rejected.state == FileState.REJECTED
    assert rejected.reason == "column tip: bad"
    assert rejected.stored_path == "/q/bad.csv"
    assert rejected.finished_at == clock.now
    trained = ledger.get(good_b)
    assert (trained.rows, trained.model_version) == (12, "7")
    assert {r.sha256 for r in ledger.files(FileState.TRAINED)} == {good_a, good_b}


def test_set_stored_path(ledger: Ledger) -> None:
    digest = announced(ledger, "a.csv")
    ledger.set_stored_path(digest, "/archive/a.csv")
    assert ledger.get(digest).stored_path == "/archive/a.csv"
    assert ledger.get(sha("unknown")) is None


def test_a_second_ledger_on_the_same_database_sees_the_same_rows(ledger: Ledger, url: str) -> None:
    digest = announced(ledger, "a.csv")
    other = Ledger(url)
    try:
        assert [r.sha256 for r in other.claim_pending("other", ttl_seconds=TTL)] == [digest]
        assert ledger.get(digest).claimed_by == "other"
    finally:
        other.close()


def test_concurrent_claimers_never_share_a_file(url: str) -> None:
    total, threads = 50, 4
    feeder = Ledger(url)
    claims: list[list[str]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    done = threading.Event()
    start = threading.Barrier(threads + 1)

    def claimer(index: int) -> None:
        ledger = Ledger(url)
        try:
            start.wait()
            attempt = 0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                attempt += 1
                got = ledger.claim_pending(f"run-{index}-{attempt}", ttl_seconds=900)
                claims[index].extend(r.sha256 for r in got)
                if done.is_set() and not got:
                    break
        except BaseException as error:  # surfaced in the main thread
            errors.append(error)
        finally:
            ledger.close()

    workers = [threading.Thread(target=claimer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    try:
        start.wait()
        for number in range(total):  # files become claimable while the claimers race
            arrival = arrive(feeder, f"f{number:02d}.csv")
            feeder.mark_announced(arrival.id)
    finally:
        done.set()
        for worker in workers:
            worker.join(timeout=30)
    feeder.close()

    assert not errors, errors
    everything = [digest for per_thread in claims for digest in per_thread]
    assert Counter(everything) == Counter(sha(f"f{n:02d}.csv") for n in range(total))
    for i in range(threads):
        for j in range(i + 1, threads):
            assert not set(claims[i]) & set(claims[j])


def test_suspects_are_held_out_until_accepted_or_retracted(ledger: Ledger, clock) -> None:
    bad, worse, good = (announced(ledger, f"{n}.csv") for n in ("bad", "worse", "good"))
    ledger.claim_pending("run-1", ttl_seconds=TTL)
    ledger.mark_suspect({bad: "with it 0.21; without it 0.61", worse: "…"}, run_id="run-1")
    ledger.mark_trained({good: 22}, run_id="run-1", version="3")
    assert ledger.counts()["suspect"] == 2
    trained = {r.sha256 for r in ledger.files(FileState.TRAINED)}
    assert trained == {good}, "training never reads suspects"
    assert ledger.get(bad).reason == "with it 0.21; without it 0.61"

    assert ledger.accept_suspect(bad, "suspect, accepted: checked by hand")
    assert not ledger.accept_suspect(good, "not a suspect")
    accepted = ledger.get(bad)
    assert (accepted.state, accepted.model_version) == (FileState.TRAINED, None)
    ledger.assign_first_version([bad, good], "4")
    assert ledger.get(bad).model_version == "4"
    assert ledger.get(good).model_version == "3"  # its first version stays

    assert ledger.retract(worse, "bad labels")
    assert ledger.get(worse).state == "retracted"
    assert ledger.counts()["suspect"] == 0


def test_content_refused_for_its_name_is_new_under_a_csv_name(ledger: Ledger) -> None:
    refused = ledger.record_arrival(
        name="x.txt",
        path="/in/x.txt",
        size=3,
        sha256="c" * 64,
        detected_via="push",
        refused="not a CSV: x.txt",
    )
    assert refused.disposition == "refused" and ledger.get("c" * 64).state == "rejected"
    again = ledger.record_arrival(
        name="x.csv", path="/in/x.csv", size=3, sha256="c" * 64, detected_via="push"
    )
    assert again.disposition == "new"
    assert (ledger.get("c" * 64).state, ledger.get("c" * 64).name) == ("detected", "x.csv")
    copy = ledger.record_arrival(
        name="y.txt",
        path="/in/y.txt",
        size=3,
        sha256="c" * 64,
        detected_via="push",
        refused="not a CSV: y.txt",
    )
    assert copy.disposition == "duplicate"  # a pending CSV's bytes under another name


# -- stragglers: announced files no run took ------------------------------------------------
WAIT = 10.0


def test_an_announced_file_is_a_straggler_only_once_its_wait_is_over(ledger: Ledger, clock) -> None:
    digest = announced(ledger, "a.csv")
    clock.advance(WAIT)
    assert ledger.stragglers(WAIT) == [], "exactly the wait is not yet over"
    clock.advance(0.5)
    assert [r.sha256 for r in ledger.stragglers(WAIT)] == [digest]


def test_stragglers_leave_out_files_not_announced_held_or_finished(ledger: Ledger, clock) -> None:
    arrive(ledger, "detected-only.csv")
    held = announced(ledger, "held.csv")
    ledger.claim_pending("live-run", ttl_seconds=TTL)
    done = announced(ledger, "done.csv")
    ledger.claim_pending("run-2", ttl_seconds=TTL)
    ledger.mark_trained({done: 4}, run_id="run-2", version="1")
    clock.advance(WAIT + 1)  # past the wait, within the claims' time to live
    assert ledger.stragglers(WAIT) == []
    assert ledger.get(held).state == FileState.CLAIMED


def test_files_released_from_an_ended_run_are_stragglers_at_once(ledger: Ledger) -> None:
    first = announced(ledger, "a.csv")
    second = announced(ledger, "b.csv")
    ledger.claim_pending("dead-run", ttl_seconds=TTL)
    ledger.release_claims("dead-run")
    other = announced(ledger, "c.csv")  # announced just now, not released from any run
    assert ledger.stragglers(WAIT) == [], "without the run's id they wait like any file"
    got = [r.sha256 for r in ledger.stragglers(WAIT, {"dead-run"})]
    assert got == [first, second]
    assert other not in got
    assert ledger.stragglers(WAIT, {"another-run"}) == []


def test_a_claim_past_its_time_to_live_is_a_straggler(ledger: Ledger, clock) -> None:
    digest = announced(ledger, "a.csv")
    ledger.claim_pending("killed-run", ttl_seconds=TTL)
    clock.advance(TTL)
    assert ledger.stragglers(TTL * 10) == []
    clock.advance(0.5)
    assert [r.sha256 for r in ledger.stragglers(TTL * 10)] == [digest]


def test_stragglers_come_oldest_detected_first(ledger: Ledger, clock) -> None:
    names = ["c.csv", "a.csv", "b.csv"]
    for name in names:
        announced(ledger, name)
        clock.advance(1)
    clock.advance(WAIT)
    assert [r.name for r in ledger.stragglers(WAIT)] == names


def test_touch_announced_restarts_a_stragglers_wait(ledger: Ledger, clock) -> None:
    digest = announced(ledger, "a.csv")
    untouched = announced(ledger, "b.csv")
    clock.advance(WAIT + 1)
    ledger.touch_announced(digest)
    record = ledger.get(digest)
    assert (record.announced_at, record.state) == (clock.now, FileState.ANNOUNCED)
    assert [r.sha256 for r in ledger.stragglers(WAIT)] == [untouched]
    clock.advance(WAIT + 1)
    assert {r.sha256 for r in ledger.stragglers(WAIT)} == {digest, untouched}


# -- claims: who holds them, who held them before -------------------------------------------
def test_claiming_runs_are_the_runs_holding_files_now(ledger: Ledger) -> None:
    assert ledger.claiming_runs() == set()
    a = announced(ledger, "a.csv")
    ledger.claim_pending("run-1", ttl_seconds=TTL)
    announced(ledger, "b.csv")
    announced(ledger, "c.csv")
    ledger.claim_pending("run-2", ttl_seconds=TTL)
    assert ledger.claiming_runs() == {"run-1", "run-2"}, "one entry per run, not per file"
    ledger.mark_trained({a: 1}, run_id="run-1", version="1")
    assert ledger.claiming_runs() == {"run-2"}
    ledger.release_claims("run-2")
    assert ledger.claiming_runs() == set(), "a released run holds nothing"


def test_previous_claimed_by_names_the_run_that_left_the_file(ledger: Ledger, clock) -> None:
    digest = announced(ledger, "a.csv")
    (first,) = ledger.claim_pending("run-1", ttl_seconds=TTL)
    assert (first.claimed_by, first.previous_claimed_by) == ("run-1", None)

    ledger.release_claims("run-1")  # run-1 failed: the file goes back, the note stays
    released = ledger.get(digest)
    assert (released.state, released.claimed_by) == (FileState.ANNOUNCED, "run-1")
    (second,) = ledger.claim_pending("run-2", ttl_seconds=TTL)
    assert (second.claimed_by, second.previous_claimed_by) == ("run-2", "run-1")

    clock.advance(TTL + 1)  # run-2 was killed with its worker: its claim expires
    fresh = announced(ledger, "b.csv")
    third = {r.sha256: r for r in ledger.claim_pending("run-3", ttl_seconds=TTL)}
    assert (third[digest].claimed_by, third[digest].previous_claimed_by) == ("run-3", "run-2")
    assert third[fresh].previous_claimed_by is None, "a first claim has no one before it"

    ledger.mark_trained({digest: 3, fresh: 4}, run_id="run-3", version="1")
    assert ledger.get(digest).previous_claimed_by == "run-2", "kept as the file's history"


def test_readmitted_content_arrives_with_no_claim_history(ledger: Ledger) -> None:
    digest = announced(ledger, "bad.csv")
    ledger.claim_pending("run-1", ttl_seconds=TTL)
    ledger.mark_rejected(digest, run_id="run-1", reason="bad", path="/q/bad.csv")
    assert ledger.readmit(digest, "/q/bad.csv")
    again = arrive(ledger, "bad.csv", folder="/inbox2")
    assert again.disposition == Disposition.NEW
    ledger.mark_announced(again.id)
    (claimed,) = ledger.claim_pending("run-2", ttl_seconds=TTL)
    # run-1 finished it (rejected it) and did not die: no version of run-1 is an orphan.
    assert claimed.previous_claimed_by is None


# -- lineage: versions and the files behind them --------------------------------------------
def trained_files(ledger: Ledger, clock, *names: str) -> list[str]:
    """Announce, claim and train these files (one second apart), as one run's version."""
    shas = []
    for name in names:
        shas.append(announced(ledger, name))
        clock.advance(1)
    ledger.claim_pending(f"run-{names[0]}", ttl_seconds=TTL)
    ledger.mark_trained(dict.fromkeys(shas, 1), run_id=f"run-{names[0]}", version=None)
    return shas


def test_lineage_links_versions_and_files_both_ways(ledger: Ledger, clock) -> None:
    a, b, c = trained_files(ledger, clock, "a.csv", "b.csv", "c.csv")
    ledger.record_lineage("9", {a: True, b: True})
    ledger.record_lineage("10", {a: False, b: False, c: True})
    assert ledger.versions_using(a) == ["9", "10"], "by number, not by text"
    assert ledger.versions_using(c) == ["10"]
    assert ledger.versions_using(sha("never-trained")) == []
    assert [(r.sha256, new) for r, new in ledger.files_of_version("10")] == [
        (a, False),
        (b, False),
        (c, True),
    ]
    assert [r.name for r, _new in ledger.files_of_version("9")] == ["a.csv", "b.csv"]
    assert ledger.files_of_version("11") == []


def test_recording_a_versions_lineage_again_replaces_it(ledger: Ledger, clock) -> None:
    a, b = trained_files(ledger, clock, "a.csv", "b.csv")
    ledger.record_lineage("1", {a: True, b: True})
    ledger.record_lineage("1", {b: False})
    assert [(r.sha256, new) for r, new in ledger.files_of_version("1")] == [(b, False)]
    assert ledger.versions_using(a) == []
    ledger.record_lineage("1", {})  # a discarded version leaves no lineage
    assert ledger.files_of_version("1") == [] and ledger.versions_using(b) == []


def test_versions_without_leave_out_every_version_that_used_a_file(ledger: Ledger, clock) -> None:
    a, b, c = trained_files(ledger, clock, "a.csv", "b.csv", "c.csv")
    ledger.record_lineage("2", {a: True})
    ledger.record_lineage("10", {a: False, b: True})
    ledger.record_lineage("11", {c: True})
    assert ledger.versions_without(set()) == ["2", "10", "11"], "by number, not by text"
    assert ledger.versions_without({b}) == ["2", "11"]
    assert ledger.versions_without({a}) == ["11"]
    assert ledger.versions_without({a, c}) == []


# -- retraction and lookup --------------------------------------------------------------------
def test_retract_marks_a_trained_or_suspect_file_bad(ledger: Ledger, clock) -> None:
    trained, suspect = (announced(ledger, n) for n in ("t.csv", "s.csv"))
    ledger.claim_pending("run-1", ttl_seconds=TTL)
    ledger.mark_trained({trained: 5}, run_id="run-1", version="1")
    ledger.mark_suspect({suspect: "blamed"}, run_id="run-1")
    clock.advance(7)
    assert ledger.retract(trained, "wrong labels")
    assert ledger.retract(suspect, "confirmed bad")
    record = ledger.get(trained)
    assert (record.state, record.reason, record.finished_at) == (
        FileState.RETRACTED,
        "wrong labels",
        clock.now,
    )
    assert record.model_version == "1", "its history stays"
    assert ledger.get(suspect).state == FileState.RETRACTED
    assert ledger.counts()["retracted"] == 2
    assert not ledger.retract(trained, "twice"), "already retracted"
    assert ledger.get(trained).reason == "wrong labels"


@pytest.mark.parametrize("state", [FileState.ANNOUNCED, FileState.CLAIMED, FileState.REJECTED])
def test_retract_refuses_a_file_that_never_trained(ledger: Ledger, state: FileState) -> None:
    digest = announced(ledger, "a.csv")
    if state != FileState.ANNOUNCED:
        ledger.claim_pending("run-1", ttl_seconds=TTL)
    if state == FileState.REJECTED:
        ledger.mark_rejected(digest, run_id="run-1", reason="bad", path="/q/a.csv")
    assert not ledger.retract(digest, "no")
    assert ledger.get(digest).state == state
    assert not ledger.retract(sha("unknown"), "no")


def test_find_by_sha_by_unique_prefix_or_by_any_name(ledger: Ledger, clock) -> None:
    digest = announced(ledger, "a.csv", "alpha")
    arrive(ledger, "copy of a.csv", "alpha")
    assert ledger.find(digest).sha256 == digest
    assert ledger.find(digest[:8]).sha256 == digest
    assert ledger.find(digest[:7]) is None, "a prefix needs 8 characters"
    assert ledger.find("a.csv").sha256 == digest
    assert ledger.find("copy of a.csv").sha256 == digest, "a duplicate's name finds the content"
    assert ledger.find("never.csv") is None


def test_find_by_name_takes_the_newest_content_under_that_name(ledger: Ledger, clock) -> None:
    announced(ledger, "daily.csv", "monday")
    clock.advance(1)
    tuesday = announced(ledger, "daily.csv", "tuesday")
    assert ledger.find("daily.csv").sha256 == tuesday


def test_find_with_an_ambiguous_prefix_finds_nothing(ledger: Ledger) -> None:
    for name, digest in (("x.csv", "ab" * 32), ("y.csv", "abababab" + "cd" * 28)):
        ledger.record_arrival(
            name=name, path=f"/in/{name}", size=1, sha256=digest, detected_via="push"
        )
    assert ledger.find("abababab") is None, "two files share it: neither is meant"
    assert ledger.find("ababababab").sha256 == "ab" * 32


# -- what `arrivals status` reads -------------------------------------------------------------
def test_recent_arrivals_pair_each_arrival_with_its_file_newest_first(
    ledger: Ledger, clock
) -> None:
    first = announced(ledger, "a.csv", "alpha")
    clock.advance(1)
    arrive(ledger, "copy of a.csv", "alpha")
    clock.advance(1)
    arrive(ledger, "b.csv", "beta")
    recent = ledger.recent_arrivals(10)
    assert [(a.name, a.duplicate_of, f.name) for a, f in recent] == [
        ("b.csv", None, "b.csv"),
        ("copy of a.csv", "a.csv", "a.csv"),
        ("a.csv", None, "a.csv"),
    ]
    assert recent[1][1].sha256 == first and recent[1][1].state == FileState.ANNOUNCED
    assert [a.name for a, _file in ledger.recent_arrivals(1)] == ["b.csv"]


def test_oldest_pending_detected_at_ignores_finished_files(ledger: Ledger, clock) -> None:
    assert ledger.oldest_pending_detected_at() is None
    done = announced(ledger, "done.csv")
    ledger.claim_pending("run-1", ttl_seconds=TTL)
    ledger.mark_trained({done: 1}, run_id="run-1", version="1")
    clock.advance(5)
    waiting_since = clock.now
    arrive(ledger, "waiting.csv")
    clock.advance(5)
    announced(ledger, "later.csv")
    assert ledger.oldest_pending_detected_at() == waiting_since
