"""The soak's end-of-run invariants, over a real SQLite ledger and real folders under tmp_path:
a consistent history passes, and each invariant catches the fault it is about."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from automations.door import quarantine
from consumer.decision import KEPT, PROMOTED, REPLACED_RETRACTED, WORSE
from shared import ledger_schema as schema
from shared.fs import atomic_write_json, move_into
from shared.ledger import Disposition, Ledger
from shared.settings import Settings
from soak import gather
from soak.invariants import DECISION_TAG, Delivered, Findings, Places, Snapshot, evaluate

TTL = 60.0


def sha(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


class World:
    """A home's ledger and data folders, written the way the sensor and the retrains write them."""

    def __init__(self, settings: Settings, clock) -> None:
        dirs = settings.dirs
        self.places = Places(dirs.inbox, dirs.archive, dirs.quarantine)
        for folder in (dirs.inbox, self.places.duplicates, dirs.quarantine):
            folder.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.ledger = Ledger(settings.ledger_url, clock=clock)
        self.versions: dict[str, dict[str, str]] = {}
        self.champion: str | None = None
        self.arrived: dict[str, set[str]] = defaultdict(set)
        self.delivered: list[Delivered] = []

    def drop(self, name: str, content: str, kind: str, expect: str, *, announce: bool = True):
        """The driver puts a file in the inbox; the sensor records, moves and announces it."""
        path = self.places.inbox / name
        path.write_text(content)
        self.delivered.append(Delivered(name, sha(content), kind, expect))
        refused = None if name.endswith(".csv") else f"not a CSV: {name}"
        arrival = self.ledger.record_arrival(
            name=name,
            path=str(path),
            size=len(content),
            sha256=sha(content),
            detected_via="push",
            refused=refused,
        )
        assert arrival is not None
        if arrival.disposition == Disposition.REFUSED:
            where = quarantine(path, self.places.quarantine, sha256=arrival.sha256, reason=refused)
            self.ledger.set_stored_path(arrival.sha256, str(where))
            self.ledger.move_arrival(arrival.id, str(where))
        elif arrival.disposition == Disposition.DUPLICATE:
            moved = move_into(path, self.places.duplicates, name)
            self.ledger.move_arrival(arrival.id, str(moved))
        if announce:
            self.ledger.mark_announced(arrival.id)
            if arrival.disposition == Disposition.NEW:
                self.arrived[arrival.sha256].add(name)
        return arrival

    def run(self, run_id: str, *, version=None, decision=KEPT, reject=(), suspect=(), earlier=()):
        """One retrain: claim, quarantine `reject`, archive the rest, train, tag, lineage."""
        claimed = self.ledger.claim_pending(run_id, ttl_seconds=TTL)
        trained = {}
        for record in claimed:
            path = Path(record.stored_path)
            if record.name in reject:
                where = move_into(path, self.places.quarantine, record.name)
                atomic_write_json(self.places.quarantine / f"{where.name}.reason.json", {})
                self.ledger.mark_rejected(
                    record.sha256, run_id=run_id, reason="bad", path=str(where)
                )
                continue
            moved = move_into(path, self.places.archive, record.name)
            self.ledger.set_stored_path(record.sha256, str(moved))
            if record.name in suspect:
                self.ledger.mark_suspect({record.sha256: "to blame"}, run_id=run_id)
            else:
                trained[record.sha256] = 10
        self.ledger.mark_trained(trained, run_id=run_id, version=version)
        if version is not None:
            # As consumer.commit.lineage_of: an earlier file no version has yet is new here.
            old = {sha(c): self.ledger.get(sha(c)).model_version is None for c in earlier}
            self.ledger.record_lineage(version, {**old, **dict.fromkeys(trained, True)})
            self.ledger.assign_first_version([s for s, new in old.items() if new], version)
            self.versions[version] = {DECISION_TAG: decision}
            if decision == PROMOTED:
                self.champion = version

    def snap(self, **changes) -> Snapshot:
        found = gather.snapshot_from(
            self.ledger,
            self.places,
            versions={v: dict(tags) for v, tags in self.versions.items()},
            champion=self.champion,
            arrived={s: set(names) for s, names in self.arrived.items()},
            status_files=self.ledger.counts(),
        )
        return dataclasses.replace(found, **changes)

    def check(self, **changes) -> Findings:
        return evaluate(self.snap(**changes), self.delivered, claim_ttl=TTL, now=self.clock.now)

    def sql(self, statement) -> None:
        with self.ledger.engine.begin() as conn:
            conn.execute(statement)


@pytest.fixture
def world(settings: Settings, clock):
    """A consistent history: trained, promoted, kept, rejected, refused, duplicate, suspect,
    and a file kept without a model (no version yet)."""
    w = World(settings, clock)
    w.drop("good-1.csv", "g1", "good", "trained")
    w.drop("bad-1.csv", "b1", "malformed", "rejected")
    w.drop("notes.txt", "n1", "malformed", "rejected")  # refused at the door
    w.run("run-1", version="1", decision=PROMOTED, reject={"bad-1.csv"})
    w.drop("copy-of-good-1.csv", "g1", "duplicate", "duplicate")
    w.drop("burst-1.csv", "g2", "burst", "trained")
    w.run("run-2", version="2", decision=KEPT, earlier=["g1"])
    w.drop("slow-1.csv", "s1", "slow", "trained")
    w.drop("batch_0001.csv", "p1", "producer", "trained")
    w.run("run-3", suspect={"slow-1.csv"})  # only suspects: the clean file is kept, no version
    clock.advance(10)
    yield w
    w.ledger.close()


def ids(findings: Findings) -> list[str]:
    return sorted(v.invariant for v in findings.violations)


def test_a_consistent_history_passes(world: World) -> None:
    findings = world.check()
    assert (findings.violations, findings.lost, findings.duplicated) == ([], [], [])
    assert findings.counts["files"] == {"trained": 3, "rejected": 2, "suspect": 1}
    assert findings.counts["arrivals"] == {"new": 5, "refused": 1, "duplicate": 1}
    assert findings.counts["finished_versions"] == 2
    assert findings.counts["kept_without_version"] == 1
    assert findings.counts["champion"] == "1"


# -- 1. one terminal state, in its place on disk ------------------------------------------
def test_a_file_still_pending_is_a_violation_and_lost(world: World) -> None:
    world.drop("late.csv", "l1", "good", "trained")
    findings = world.check()
    assert ids(findings) == ["one_terminal_place", "one_terminal_state"]  # and left in the inbox
    assert findings.lost == [f"late.csv ({sha('l1')[:12]}): still announced"]


def test_a_released_file_is_not_terminal(world: World) -> None:
    table = schema.files_table
    world.sql(table.update().where(table.c.name == "bad-1.csv").values(state="released"))
    findings = world.check()
    assert "one_terminal_state" in ids(findings)
    assert findings.lost == [f"bad-1.csv ({sha('b1')[:12]}): still released"]


def test_a_trained_file_missing_from_the_archive(world: World) -> None:
    (world.places.archive / "burst-1.csv").unlink()
    assert ids(world.check()) == ["one_terminal_place"]


def test_a_rejected_file_without_its_reason_or_outside_the_quarantine(world: World) -> None:
    (world.places.quarantine / "bad-1.csv.reason.json").unlink()
    assert ids(world.check()) == ["one_terminal_place"]
    record = world.ledger.get(sha("b1"))
    world.ledger.set_stored_path(sha("b1"), str(world.places.inbox / "bad-1.csv"))
    Path(record.stored_path).rename(world.places.inbox / "bad-1.csv")
    details = [v.detail for v in world.check().violations]
    assert any("not in the quarantine" in d for d in details)
    assert any("is in the inbox" in d for d in details)


def test_a_file_rejected_as_vanished_has_no_place_but_a_good_one_is_not_expected(
    world: World,
) -> None:
    world.drop("gone.csv", "v1", "good", "trained")
    (world.places.inbox / "gone.csv").unlink()
    claimed = world.ledger.claim_pending("run-4", ttl_seconds=TTL)
    reason = f"file vanished from {claimed[0].stored_path} before it could be read"
    world.ledger.mark_rejected(
        sha("v1"), run_id="run-4", reason=reason, path=claimed[0].stored_path
    )
    findings = world.check()
    assert ids(findings) == ["expected_outcome"]
    assert findings.counts["rejected_without_file"] == 1


def test_a_duplicate_left_in_the_inbox(world: World) -> None:
    path = world.places.inbox / "copy-2.csv"
    path.write_text("g2")
    world.delivered.append(Delivered("copy-2.csv", sha("g2"), "duplicate", "duplicate"))
    arrival = world.ledger.record_arrival(  # the sensor died before moving it
        name="copy-2.csv", path=str(path), size=2, sha256=sha("g2"), detected_via="scan"
    )
    world.ledger.mark_announced(arrival.id)
    findings = world.check()
    assert ids(findings) == ["one_terminal_place", "one_terminal_place"]
    details = sorted(v.detail for v in findings.violations)
    assert details[0].endswith("is in the inbox")
    assert details[1].endswith(f"is not in {world.places.duplicates}: {path}")


def test_a_file_no_ledger_row_names(world: World) -> None:
    (world.places.archive / "stray.csv").write_text("?")
    (world.places.quarantine / "stray.csv.rows.csv").write_text("dropped rows: not data")
    findings = world.check()
    assert [v.detail for v in findings.violations] == [
        f"{world.places.archive / 'stray.csv'} is in no ledger row"
    ]


# -- 2. new in exactly one finished version ----------------------------------------------
def test_a_content_new_in_two_versions_is_duplicated(world: World) -> None:
    world.ledger.record_lineage("3", {sha("g1"): False, sha("g2"): True})
    world.versions["3"] = {DECISION_TAG: KEPT}
    findings = world.check()
    assert findings.duplicated == [f"burst-1.csv ({sha('g2')[:12]}) is new in v2, v3"]


def test_a_trained_file_new_in_no_version(world: World) -> None:
    world.ledger.record_lineage("2", {sha("g1"): False})
    findings = world.check()
    assert ids(findings) == ["new_in_one_version"]
    assert "burst-1.csv" in findings.violations[0].detail


def test_a_file_new_in_a_version_other_than_its_model_version(world: World) -> None:
    table = schema.files_table
    world.sql(table.update().where(table.c.name == "burst-1.csv").values(model_version="1"))
    assert ids(world.check()) == ["new_in_one_version"]


def test_a_rejected_file_new_in_a_version(world: World) -> None:
    world.ledger.record_lineage("2", {sha("g1"): False, sha("g2"): True, sha("b1"): True})
    assert ids(world.check()) == ["new_in_one_version"]


# -- 3. every version finished; every version the ledger names exists ----------------------
def test_a_version_without_its_decision_tag(world: World) -> None:
    del world.versions["2"][DECISION_TAG]
    findings = world.check()
    assert ids(findings) == ["new_in_one_version", "versions_finished"]


def test_a_version_the_ledger_names_but_mlflow_lacks(world: World) -> None:
    del world.versions["2"]
    assert "ledger_versions_exist" in ids(world.check())


def test_a_version_without_lineage(world: World) -> None:
    world.versions["3"] = {DECISION_TAG: WORSE}
    assert ids(world.check()) == ["versions_finished"]


# -- 4. the champion ------------------------------------------------------------------------
def test_the_champion_on_a_version_that_was_not_promoted(world: World) -> None:
    assert ids(world.check(champion="2")) == ["champion_decided"]


def test_no_champion_although_a_version_won(world: World) -> None:
    assert ids(world.check(champion=None)) == ["champion_decided"]


def test_a_champion_forced_by_a_retraction_is_fine(world: World) -> None:
    world.versions["2"][DECISION_TAG] = REPLACED_RETRACTED
    assert world.check(champion="2").violations == []


# -- 5. claims ---------------------------------------------------------------------------------
def test_a_claim_older_than_its_ttl(world: World) -> None:
    world.drop("held.csv", "h1", "good", "trained")
    world.ledger.claim_pending("run-dead", ttl_seconds=TTL)
    assert "no_stale_claim" not in ids(world.check())  # live: only not terminal
    world.clock.advance(TTL + 1)
    stale = [v for v in world.check().violations if v.invariant == "no_stale_claim"]
    assert [v.detail.split(" claim of ")[1] for v in stale] == ["run-dead expired 1 s ago"]


def test_a_claim_longer_than_the_ttl(world: World) -> None:
    world.drop("held.csv", "h1", "good", "trained")
    world.ledger.claim_pending("run-long", ttl_seconds=10 * TTL)
    assert "no_stale_claim" in ids(world.check())


def test_a_finished_file_that_keeps_a_claim_expiry(world: World) -> None:
    table = schema.files_table
    world.sql(table.update().where(table.c.name == "good-1.csv").values(claim_expires_at=1.0))
    assert ids(world.check()) == ["no_stale_claim"]


# -- 6. status counts ---------------------------------------------------------------------
def test_status_counts_that_differ_from_the_ledger(world: World) -> None:
    status = {**world.ledger.counts(), "trained": 99}
    findings = world.check(status_files=status)
    assert [v.detail for v in findings.violations] == ["trained: status 99, ledger 3"]


# -- 7. the event feed ---------------------------------------------------------------------
def test_an_announced_file_without_its_arrived_event(world: World) -> None:
    del world.arrived[sha("g2")]
    assert ids(world.check()) == ["arrived_event"]


def test_an_arrival_whose_name_no_event_carries(world: World) -> None:
    world.arrived[sha("g2")] = {"another-name.csv"}
    assert ids(world.check()) == ["arrived_event"]


def test_an_arrival_never_announced(world: World) -> None:
    world.drop("copy-2.csv", "g2", "duplicate", "duplicate", announce=False)
    assert ids(world.check()) == ["arrived_event"]


def test_a_trained_file_that_was_never_announced(world: World) -> None:
    table = schema.files_table
    world.sql(table.update().where(table.c.name == "good-1.csv").values(announced_at=None))
    findings = world.check()
    assert [v.detail.split(", ")[-1] for v in findings.violations] == ["never announced"]


# -- deliveries: lost, duplicated, expected ---------------------------------------------------
def test_a_delivery_the_ledger_never_saw_is_lost(world: World) -> None:
    world.delivered.append(Delivered("ghost.csv", sha("ghost"), "good", "trained"))
    world.delivered.append(Delivered("good-1.csv", sha("other bytes"), "good", "trained"))
    world.delivered.append(Delivered("renamed.csv", sha("g2"), "good", "trained"))
    findings = world.check()
    assert findings.lost == [
        f"ghost.csv ({sha('ghost')[:12]}): no ledger row",
        f"good-1.csv ({sha('other bytes')[:12]}): no ledger row",
        f"renamed.csv ({sha('g2')[:12]}): no arrival of it by name (-)",
    ]


def test_one_delivery_recorded_twice_is_duplicated(world: World) -> None:
    arrival = world.ledger.record_arrival(  # the sensor recorded it again after a crash
        name="copy-of-good-1.csv",
        path=str(world.places.duplicates / "copy-of-good-1.csv"),
        size=2,
        sha256=sha("g1"),
        detected_via="scan",
    )
    world.ledger.mark_announced(arrival.id)
    findings = world.check()
    assert findings.duplicated == [
        f"copy-of-good-1.csv ({sha('g1')[:12]}): 2 arrivals of one delivery"
    ]


def test_outcomes_that_differ_from_what_the_delivery_expects(world: World) -> None:
    world.drop("bad-2.csv", "b2", "malformed", "rejected")
    world.drop("dup-first.csv", "d1", "duplicate", "duplicate")
    world.drop("odd.csv", "o1", "good", "rejected")
    world.run("run-4", version="3", earlier=["g1", "g2", "p1"])
    details = sorted(v.detail for v in world.check().violations)
    assert details == [
        f"duplicate dup-first.csv ({sha('d1')[:12]}) arrived as new",
        f"good odd.csv ({sha('o1')[:12]}) is a good delivery that expects rejected",
        f"malformed bad-2.csv ({sha('b2')[:12]}) ended trained: None",
    ]


# -- gathering from a stack ------------------------------------------------------------------
class FakeStack:
    """What `check` reads of a RunningStack: the ledger, MLflow, Prefect's pages, the status."""

    def __init__(self, world: World, settings: Settings, alias: httpx.Response) -> None:
        self.settings, self.world, self.alias = settings, world, alias
        # A long feed: heartbeats first, so the arrivals are on the last pages only.
        beat = {"resource": {"prefect.resource.id": "inbox.sensor.host"}, "payload": {}}
        events = [beat] * 160 + [
            {"resource": {"prefect.resource.id": f"inbox.file.{s}"}, "payload": {"name": n}}
            for s, names in world.arrived.items()
            for n in names
        ]
        self.pages = [events[i : i + 50] for i in range(0, len(events), 50)]
        self.http = self

    def _page(self, index: int) -> httpx.Response:
        more = index + 1 < len(self.pages)
        body = {
            "events": self.pages[index],
            "next_page": f"http://api/events/filter/next?page-token={index + 1}" if more else None,
        }
        return httpx.Response(200, json=body, request=httpx.Request("GET", "http://api"))

    def prefect(self, method: str, path: str, **kwargs) -> httpx.Response:
        assert (method, path) == ("POST", "/events/filter")
        assert kwargs["json"]["filter"]["event"] == {"name": ["inbox.file.arrived"]}
        return self._page(0)

    def get(self, url: str) -> httpx.Response:
        return self._page(int(url.rsplit("=", 1)[1]))

    def mlflow(self, endpoint: str, **params) -> httpx.Response:
        assert endpoint == "/registered-models/alias" and params["alias"] == "champion"
        return self.alias

    def model_versions(self) -> list[dict]:
        return [{"version": v, "tags": dict(t)} for v, t in self.world.versions.items()]

    def ledger(self) -> Ledger:
        return Ledger(self.settings.ledger_url)

    def status(self) -> dict:
        return {"files": self.world.ledger.counts()}


def test_check_reads_every_page_of_the_feed_and_the_alias(world: World, settings) -> None:
    request = httpx.Request("GET", "http://mlflow")
    alias = httpx.Response(200, json={"model_version": {"version": "1"}}, request=request)
    stack = FakeStack(world, settings, alias)
    assert len(stack.pages) > 3
    findings = gather.check(stack, world.delivered, claim_ttl=TTL, now=world.clock.now)
    assert (findings.violations, findings.lost, findings.duplicated) == ([], [], [])

    no_alias = httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE"}, request=request)
    findings = gather.check(FakeStack(world, settings, no_alias), world.delivered, claim_ttl=TTL)
    assert ids(findings) == ["champion_decided"]
    with pytest.raises(httpx.HTTPStatusError):
        gather.check(
            FakeStack(world, settings, httpx.Response(500, json={}, request=request)),
            world.delivered,
            claim_ttl=TTL,
        )


def test_the_lineage_and_claims_are_read_from_the_ledger(world: World) -> None:
    snap = world.snap()
    assert sorted(snap.lineage) == sorted(
        [("1", sha("g1"), True), ("2", sha("g1"), False), ("2", sha("g2"), True)]
    )
    assert snap.claims == {}
    world.sql(sa.text("UPDATE files SET claim_expires_at = 5 WHERE name = 'bad-1.csv'"))
    assert world.snap().claims == {sha("b1"): 5.0}
