"""End-of-soak invariants: once the stack is quiet, every file is accounted for exactly once.

Pure checks over plain data first (a `Snapshot`: ledger rows, registry versions and alias,
the event feed, the status counts, the data folders); `check` gathers a snapshot from a
`RunningStack` at the bottom. Disk places per outcome (automations/sensor.py, door.py,
consumer/ingest.py): trained/suspect/retracted in `archive/`, rejected in `quarantine/`
with `<name>.reason.json`, duplicates in `archive/duplicates/`, nothing left in `inbox/`.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from arrivals.harness import DECISION_TAG
from consumer.decision import PROMOTED, REPLACED_RETRACTED
from shared.events import FILE_ARRIVED
from shared.fs import is_temp_name, is_within
from shared.ledger import Arrival, Disposition, FileRecord, FileState

if TYPE_CHECKING:
    pass

log = logging.getLogger("arrivals.soak")

TERMINAL = (FileState.TRAINED, FileState.REJECTED, FileState.RETRACTED, FileState.SUSPECT)
IN_ARCHIVE = (FileState.TRAINED, FileState.SUSPECT, FileState.RETRACTED)
TRAINED_OR_SUSPECT = (FileState.TRAINED, FileState.SUSPECT)
CHAMPION_DECISIONS = (PROMOTED, REPLACED_RETRACTED)
# consumer.ingest.ingest rejects without a file to quarantine: it vanished, or its recorded
# path lay outside the data folder. Its stored_path then names where it was, not a place.
NO_FILE_REASONS = ("vanished from", "is outside")
SIDE_FILE = re.compile(r"(\.reason\.json|\.rows(-\d+)?\.csv)$")  # sidecars, dropped rows
EXPECT_BY_KIND = {"malformed": "rejected", "duplicate": "duplicate"}  # others: "trained"


@dataclass(frozen=True)
class Delivered:
    """One file the soak driver put into the inbox (its rename succeeded)."""

    name: str
    sha256: str
    kind: str  # "good" | "malformed" | "duplicate" | "slow" | "burst" | "producer"
    expect: str  # "trained" (may end "suspect") | "rejected" | "duplicate"


@dataclass(frozen=True)
class Violation:
    """One broken invariant, said for a person."""

    invariant: str
    detail: str


@dataclass
class Findings:
    """What the checks found; the soak passes when all three lists are empty."""

    violations: list[Violation]
    lost: list[str]
    duplicated: list[str]
    counts: dict


class LineageRow(NamedTuple):
    """One lineage row: `version` was trained on `sha256` (`new`: for the first time)."""

    version: str
    sha256: str
    new: bool


@dataclass(frozen=True)
class Places:
    """The data folders the disk checks look in."""

    inbox: Path
    archive: Path
    quarantine: Path

    @property
    def duplicates(self) -> Path:
        return self.archive / "duplicates"


@dataclass
class Snapshot:
    """Everything the invariants read, gathered once the stack is quiet."""

    files: list[FileRecord]
    arrivals: list[Arrival]
    lineage: list[LineageRow]
    claims: dict[str, float | None]  # sha256 -> claim_expires_at, claimed or with an expiry
    ledger_counts: dict[str, int]
    versions: dict[str, dict[str, str]]  # every MLflow version -> its tags
    champion: str | None  # the version the champion alias is on
    arrived: dict[str, set[str]]  # sha256 -> payload names of its inbox.file.arrived events
    status_files: dict[str, int]  # `arrivals status --json`["files"]
    places: Places
    inbox: dict[str, str]  # files left in the inbox (temp names aside): name -> sha256


def short(sha256: str) -> str:
    return sha256[:12]


def _label(record: FileRecord | Arrival | Delivered) -> str:
    return f"{record.name} ({short(record.sha256)})"


def _refused_at_door(arrivals: list[Arrival]) -> set[str]:
    """Contents whose latest non-duplicate arrival the sensor refused (never announced)."""
    latest = {a.sha256: a.disposition for a in arrivals if a.disposition != Disposition.DUPLICATE}
    return {sha for sha, disposition in latest.items() if disposition == Disposition.REFUSED}


def _place_problem(record: FileRecord, places: Places) -> str | None:
    """What is wrong with where a terminal file sits on disk (None: it is where it belongs)."""
    path = Path(record.stored_path)
    if record.state in IN_ARCHIVE:
        if not is_within(path, places.archive) or is_within(path, places.duplicates):
            return f"is {record.state} but stored at {path}, not in the archive"
    elif not is_within(path, places.quarantine):
        if any(reason in (record.reason or "") for reason in NO_FILE_REASONS):
            return None
        return f"is rejected but stored at {path}, not in the quarantine"
    elif not (places.quarantine / f"{path.name}.reason.json").is_file():
        return f"is quarantined at {path} without its .reason.json"
    return None if os.path.lexists(path) else f"is {record.state} but {path} is missing"


def check_terminal_places(snap: Snapshot) -> Iterator[Violation]:
    """1. One terminal state per content, in its place on disk; duplicates moved; inbox empty."""
    for record in snap.files:
        if record.state not in TERMINAL:
            yield Violation("one_terminal_state", f"{_label(record)} is {record.state}")
        elif problem := _place_problem(record, snap.places):
            yield Violation("one_terminal_place", f"{_label(record)} {problem}")
    duplicates = snap.places.duplicates
    for a in snap.arrivals:
        path = Path(a.path)
        if a.disposition == Disposition.DUPLICATE and not (
            is_within(path, duplicates) and os.path.lexists(path)
        ):
            yield Violation(
                "one_terminal_place", f"duplicate {_label(a)} is not in {duplicates}: {path}"
            )
    state = {r.sha256: r.state for r in snap.files}
    for name, sha in sorted(snap.inbox.items()):
        where = state.get(sha, "not in the ledger")
        yield Violation("one_terminal_place", f"{name} ({short(sha)}, {where}) is in the inbox")
    known = {
        Path(p).resolve()
        for p in [*(f.stored_path for f in snap.files), *(a.path for a in snap.arrivals)]
    }
    for folder in (snap.places.archive, duplicates, snap.places.quarantine):
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            if entry.is_dir() or is_temp_name(entry.name) or SIDE_FILE.search(entry.name):
                continue
            if entry.resolve() not in known:
                yield Violation("one_terminal_place", f"{entry} is in no ledger row")


def _new_in(snap: Snapshot) -> dict[str, list[str]]:
    """sha256 -> the versions it is new in, oldest first."""
    new_in: dict[str, list[str]] = defaultdict(list)
    for row in sorted(snap.lineage, key=lambda row: int(row.version)):
        if row.new:
            new_in[row.sha256].append(row.version)
    return new_in


def new_twice(snap: Snapshot) -> list[str]:
    """2. Duplicated: contents new in more than one version."""
    by_sha = {r.sha256: r for r in snap.files}
    return [
        f"{_label(by_sha[sha])} is new in v{', v'.join(versions)}"
        for sha, versions in sorted(_new_in(snap).items())
        if len(versions) > 1
    ]


def check_lineage(snap: Snapshot) -> Iterator[Violation]:
    """2. A trained content is new in one finished version (its model_version)."""
    new_in, used = _new_in(snap), {row.sha256 for row in snap.lineage}
    for record in snap.files:
        news = new_in.get(record.sha256, [])
        label, where = _label(record), ", ".join(f"v{v}" for v in news)
        if len(news) > 1:
            continue  # new_twice reports it
        elif record.state not in (FileState.TRAINED, FileState.RETRACTED):
            if news:
                yield Violation("new_in_one_version", f"{label} is {record.state}, new in {where}")
        elif not news:  # kept without a model (no version yet) is all a trained file may be
            if record.state == FileState.TRAINED and (
                record.model_version or record.sha256 in used
            ):
                yield Violation("new_in_one_version", f"{label} is trained, new in no version")
        elif DECISION_TAG not in snap.versions.get(news[0], {}):
            yield Violation("new_in_one_version", f"{label} is new in v{news[0]}, not finished")
        elif record.model_version != news[0]:
            yield Violation(
                "new_in_one_version",
                f"{label} is new in {where}, model_version {record.model_version}",
            )


def check_versions(snap: Snapshot) -> Iterator[Violation]:
    """3. Every MLflow version is finished and has lineage; each version the ledger names exists."""
    with_lineage = {row.version for row in snap.lineage}
    for version, tags in sorted(snap.versions.items(), key=lambda item: int(item[0])):
        if DECISION_TAG not in tags:
            yield Violation("versions_finished", f"v{version} has no {DECISION_TAG} tag")
        if version not in with_lineage:
            yield Violation("versions_finished", f"v{version} has no lineage in the ledger")
    named = with_lineage | {f.model_version for f in snap.files if f.model_version}
    for version in sorted(named - set(snap.versions), key=int):
        yield Violation("ledger_versions_exist", f"the ledger names v{version}, MLflow has none")


def check_champion(snap: Snapshot) -> Iterator[Violation]:
    """4. The champion alias is on a version decided promoted (or forced by a retraction)."""
    if snap.champion is not None:
        decision = snap.versions.get(snap.champion, {}).get(DECISION_TAG)
        if decision not in CHAMPION_DECISIONS:
            yield Violation("champion_decided", f"champion v{snap.champion} is {decision!r}")
        return
    won = sorted(
        (v for v, t in snap.versions.items() if t.get(DECISION_TAG) in CHAMPION_DECISIONS), key=int
    )
    if won:
        yield Violation("champion_decided", f"no champion alias, yet v{', v'.join(won)} won")


def check_claims(snap: Snapshot, *, claim_ttl: float, now: float) -> Iterator[Violation]:
    """5. No claim outlived its TTL or lasts longer than one; a finished file keeps no expiry."""
    by_sha = {r.sha256: r for r in snap.files}
    for sha, expires in sorted(snap.claims.items()):
        record = by_sha[sha]
        holder = record.claimed_by
        if record.state != FileState.CLAIMED:
            problem = f"is {record.state} but keeps a claim expiry"
        elif expires is None:
            problem = f"is claimed by {holder} with no expiry"
        elif expires < now:
            problem = f"claim of {holder} expired {now - expires:.0f} s ago"
        elif expires > now + claim_ttl + 1:
            problem = f"claim of {holder} ends {expires - now:.0f} s from now, TTL {claim_ttl:g} s"
        else:
            continue  # a live claim: one_terminal_state reports it (the stack should be quiet)
        yield Violation("no_stale_claim", f"{_label(record)} {problem}")


def check_status_counts(snap: Snapshot) -> Iterator[Violation]:
    """6. `arrivals status --json` counts the files the ledger counts."""
    status, ledger = snap.status_files, snap.ledger_counts
    for key in sorted(set(status) | set(ledger)):
        if status.get(key) != ledger.get(key):
            yield Violation(
                "status_counts", f"{key}: status {status.get(key)}, ledger {ledger.get(key)}"
            )


def check_event_feed(snap: Snapshot) -> Iterator[Violation]:
    """7. Every arrival announced; every announced content (and new arrival) has its event."""
    refused = _refused_at_door(snap.arrivals)
    for r in snap.files:
        through_run = r.state in (*IN_ARCHIVE, FileState.CLAIMED) or (
            r.state == FileState.REJECTED and r.sha256 not in refused
        )
        if r.announced_at is None and through_run:
            yield Violation("arrived_event", f"{_label(r)} is {r.state}, never announced")
        elif r.announced_at is not None and r.sha256 not in snap.arrived:
            yield Violation("arrived_event", f"{_label(r)} has no {FILE_ARRIVED} event")
    for a in snap.arrivals:
        if a.announced_at is None:
            yield Violation("arrived_event", f"arrival {_label(a)} was never announced")
        elif a.disposition == Disposition.NEW and a.name not in snap.arrived.get(
            a.sha256, {a.name}
        ):
            yield Violation("arrived_event", f"no {FILE_ARRIVED} event names {_label(a)}")


def _outcome_problem(d: Delivered, disposition: str, record: FileRecord) -> str | None:
    """How a delivery's arrival and content differ from what it expects (None: they match)."""
    if d.expect != EXPECT_BY_KIND.get(d.kind, "trained"):
        return f"is a {d.kind} delivery that expects {d.expect}"
    if d.expect == "duplicate":
        return None if disposition == Disposition.DUPLICATE else f"arrived as {disposition}"
    if disposition == Disposition.DUPLICATE:
        return f"arrived as a duplicate of {record.name}"
    wanted = (FileState.REJECTED,) if d.expect == "rejected" else TRAINED_OR_SUSPECT
    return None if record.state in wanted else f"ended {record.state}: {record.reason}"


def account(snap: Snapshot, delivered: list[Delivered]) -> tuple[list[Violation], list, list]:
    """Each delivery: (violations, lost, duplicated) - recorded once, terminal, as expected."""
    by_sha = {r.sha256: r for r in snap.files}
    arrivals = defaultdict(list)
    for a in snap.arrivals:
        arrivals[a.name, a.sha256].append(a)
    sent = Counter((d.name, d.sha256) for d in delivered)
    found, lost, duplicated = [], [], set()
    for d in delivered:
        label, record, mine = _label(d), by_sha.get(d.sha256), arrivals[d.name, d.sha256]
        if record is None:
            lost.append(f"{label}: no ledger row")
            continue
        if not mine or record.state not in TERMINAL:
            other = ", ".join(sorted({short(a.sha256) for a in snap.arrivals if a.name == d.name}))
            why = f"still {record.state}" if mine else f"no arrival of it by name ({other or '-'})"
            lost.append(f"{label}: {why}")
            continue
        if len(mine) > sent[d.name, d.sha256]:
            duplicated.add(f"{label}: {len(mine)} arrivals of one delivery")
        if problem := _outcome_problem(d, mine[0].disposition, record):
            found.append(Violation("expected_outcome", f"{d.kind} {label} {problem}"))
    return found, lost, sorted(duplicated)


def evaluate(
    snap: Snapshot, delivered: list[Delivered], *, claim_ttl: float, now: float
) -> Findings:
    """Every invariant over one snapshot, and the deliveries accounted for."""
    delivery_found, lost, duplicated = account(snap, delivered)
    violations = [
        *check_terminal_places(snap),
        *check_lineage(snap),
        *check_versions(snap),
        *check_champion(snap),
        *check_claims(snap, claim_ttl=claim_ttl, now=now),
        *check_status_counts(snap),
        *check_event_feed(snap),
        *delivery_found,
    ]
    decisions = Counter(tags.get(DECISION_TAG, "(none)") for tags in snap.versions.values())
    counts = {
        "files": dict(Counter(r.state for r in snap.files)),
        "arrivals": dict(Counter(a.disposition for a in snap.arrivals)),
        "versions": len(snap.versions),
        "finished_versions": len(snap.versions) - decisions["(none)"],
        "decisions": dict(decisions),
        "champion": snap.champion,
        "kept_without_version": sum(
            r.state == "trained" and not r.model_version for r in snap.files
        ),
        "rejected_without_file": sum(
            r.state == "rejected" and any(why in (r.reason or "") for why in NO_FILE_REASONS)
            for r in snap.files
        ),
    }
    return Findings(violations, lost, sorted(duplicated + new_twice(snap)), counts)
