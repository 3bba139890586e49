"""The ledger's migrations on SQLite: a first-release ledger upgrades with its rows intact, a
new ledger is created at head, and head is exactly the schema `ledger_schema` declares."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.ledger import FileRecord, FileState, Ledger, LedgerSchemaError
from shared.ledger_migrations import (
    FIRST_RELEASE,
    Upgrade,
    current_revision,
    head_revision,
    migrate,
    schema_diff,
    upgrade_ledger,
)
from shared.ledger_schema import SCHEMA_REVISION, VERSION_TABLE
from tests.support.ledger_history import ARRIVALS, CLAIMED, FILES, TRAINED, create_first_release

REVISIONS = ["0001_first_release", "0002_previous_claimed_by", "0003_lineage", "0004_alerts_sent"]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@contextmanager
def connected(url: str) -> Iterator[sa.Connection]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def test_the_code_reads_and_writes_the_head_revision() -> None:
    # A schema change without its revision (or a revision without SCHEMA_REVISION) fails here.
    assert head_revision() == SCHEMA_REVISION == REVISIONS[-1]


def test_the_revisions_from_nothing_build_exactly_the_declared_schema(url: str) -> None:
    with connected(url) as conn:
        migrate(conn)
        assert current_revision(conn) == SCHEMA_REVISION
        assert schema_diff(conn) == []


def test_a_schema_difference_is_reported(url: str) -> None:
    """The comparison is not vacuous: the first release lacks what came later."""
    with connected(url) as conn:
        migrate(conn, FIRST_RELEASE)
        diff = schema_diff(conn)
    added = {(d[0], d[1].name) for d in diff if d[0] == "add_table"}
    assert {("add_table", "lineage"), ("add_table", "alerts_sent")} <= added
    assert ("add_column", None, "files", "previous_claimed_by") in {
        (*d[:3], d[3].name) for d in diff if d[0] == "add_column"
    }


def test_a_first_release_ledger_upgrades_with_its_rows(url: str, clock) -> None:
    create_first_release(url)

    assert upgrade_ledger(url) == Upgrade(FIRST_RELEASE, SCHEMA_REVISION)

    with connected(url) as conn:
        assert current_revision(conn) == SCHEMA_REVISION
        assert schema_diff(conn) == []
        expires = conn.execute(
            sa.text("SELECT claim_expires_at FROM files WHERE state = 'claimed'")
        )
        assert expires.scalar_one() == 500.0
    ledger = Ledger(url, clock=clock)
    try:
        # Every row and value survives; the new column reads as NULL (no earlier claim known).
        fields = [f.name for f in dataclasses.fields(FileRecord)]
        assert {r.sha256: dataclasses.asdict(r) for r in ledger.files()} == {
            row["sha256"]: {f: row.get(f) for f in fields} for row in FILES
        }
        assert [(a.name, a.disposition, a.detected_via, a.size) for a in ledger.arrivals()] == [
            (a["name"], a["disposition"], a["detected_via"], a["size"]) for a in ARRIVALS
        ]
        # The upgraded ledger works: an expired claim is taken over (the new column is
        # written), lineage (the new table) is recorded and read.
        clock.now = 1_000.0  # past run-2's claim (expired at 500)
        taken = ledger.claim_pending("run-3", ttl_seconds=60)
        assert [(r.sha256, r.claimed_by, r.previous_claimed_by) for r in taken] == [
            (CLAIMED, "run-3", "run-2")
        ]
        ledger.record_lineage("1", {TRAINED: True})
        assert ledger.versions_using(TRAINED) == ["1"]
        assert ledger.get(TRAINED).state == FileState.TRAINED
    finally:
        ledger.close()


def test_a_stamped_ledger_at_the_first_revision_upgrades_with_its_rows(url: str) -> None:
    with connected(url) as conn:
        migrate(conn, FIRST_RELEASE)
        conn.execute(
            sa.text(
                "INSERT INTO files (sha256, name, size, state, stored_path, "
                "detected_at) VALUES ('c', 'x.csv', 3, 'trained', '/x', 1.0)"
            )
        )
    assert upgrade_ledger(url) == Upgrade(FIRST_RELEASE, SCHEMA_REVISION)
    with connected(url) as conn:
        row = conn.execute(sa.text("SELECT name, previous_claimed_by FROM files")).one()
        assert tuple(row) == ("x.csv", None)
        assert schema_diff(conn) == []


@pytest.mark.parametrize("revision", REVISIONS)
def test_a_ledger_from_before_migrations_is_recognised_by_its_shape(url, revision) -> None:
    with connected(url) as conn:
        migrate(conn, revision)
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))  # as create_all left it
    assert upgrade_ledger(url) == Upgrade(revision, SCHEMA_REVISION)
    with connected(url) as conn:
        assert schema_diff(conn) == []


def test_a_new_ledger_is_created_at_head_and_stamped(url: str) -> None:
    Ledger(url).close()
    with connected(url) as conn:
        assert current_revision(conn) == SCHEMA_REVISION
        assert schema_diff(conn) == []
    assert upgrade_ledger(url) == Upgrade(SCHEMA_REVISION, SCHEMA_REVISION)  # nothing to do


def test_upgrade_creates_a_missing_ledger(url: str) -> None:
    assert upgrade_ledger(url) == Upgrade(None, SCHEMA_REVISION)
    with connected(url) as conn:
        assert current_revision(conn) == SCHEMA_REVISION
        assert schema_diff(conn) == []


def test_the_ledger_refuses_a_schema_it_was_not_written_for(url: str) -> None:
    with connected(url) as conn:
        migrate(conn, REVISIONS[-2])
    with pytest.raises(LedgerSchemaError, match=r"0003_lineage.*`arrivals up` upgrades it"):
        Ledger(url)


def test_the_ledger_refuses_a_first_release_ledger_until_it_is_upgraded(url: str) -> None:
    create_first_release(url)
    with pytest.raises(LedgerSchemaError, match=r"revision 0001_first_release.*`arrivals up`"):
        Ledger(url)
    upgrade_ledger(url)
    Ledger(url).close()


def test_a_command_on_an_old_ledger_says_in_one_line_that_up_upgrades_it(settings, caplog) -> None:
    from arrivals.cli import main

    Path(settings.ledger_url.removeprefix("sqlite:///")).parent.mkdir(parents=True)
    create_first_release(settings.ledger_url)
    assert main(["status"]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [
        f"the ledger's schema is at revision {FIRST_RELEASE}, this Arrivals needs "
        f"{SCHEMA_REVISION}: `arrivals up` upgrades it"
    ]


def test_a_revision_this_code_does_not_know_is_refused(url: str) -> None:
    Ledger(url).close()
    with connected(url) as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099_from_the_future'"))
    with pytest.raises(LedgerSchemaError, match=r"0099_from_the_future.*newer version"):
        upgrade_ledger(url)
