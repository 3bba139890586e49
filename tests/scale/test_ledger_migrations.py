"""The ledger's migrations on PostgreSQL (the scale profile's ledger): the same upgrade of a
first-release ledger as on SQLite, and head equal to the declared schema with PG's types."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from arrivals.scale import drop_databases, ensure_databases
from shared.ledger import Ledger
from shared.ledger_migrations import (
    FIRST_RELEASE,
    Upgrade,
    current_revision,
    migrate,
    schema_diff,
    upgrade_ledger,
)
from shared.ledger_schema import SCHEMA_REVISION
from tests.support.fakes import FakeClock
from tests.support.ledger_history import CLAIMED, FILES, TRAINED, create_first_release
from tests.support.scale import POSTGRES, scale_overrides

pytestmark = pytest.mark.scale
PARAMS_OVERRIDES = scale_overrides()  # its databases are dropped after the module
DATABASE = PARAMS_OVERRIDES["scale"]["ledger_database"]


@pytest.fixture
def url() -> Iterator[str]:
    """An empty PostgreSQL database of its own for each test."""
    drop_databases(POSTGRES, [DATABASE])
    ensure_databases(POSTGRES, [DATABASE])
    yield f"{POSTGRES.replace('postgresql://', 'postgresql+psycopg://', 1)}/{DATABASE}"
    drop_databases(POSTGRES, [DATABASE])


def test_head_is_the_declared_schema_on_postgresql(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            migrate(conn)
            assert schema_diff(conn) == []
    finally:
        engine.dispose()


def test_a_first_release_ledger_upgrades_with_its_rows_on_postgresql(url: str) -> None:
    clock = FakeClock()
    create_first_release(url)
    assert upgrade_ledger(url) == Upgrade(FIRST_RELEASE, SCHEMA_REVISION)
    ledger = Ledger(url, clock=clock)
    try:
        assert sorted((r.sha256, r.name, r.state, r.rows) for r in ledger.files()) == sorted(
            (f["sha256"], f["name"], f["state"], f["rows"]) for f in FILES
        )
        assert all(r.previous_claimed_by is None for r in ledger.files())
        clock.now = 1_000.0  # past run-2's claim
        taken = ledger.claim_pending("run-3", ttl_seconds=60)
        assert [(r.sha256, r.previous_claimed_by) for r in taken] == [(CLAIMED, "run-2")]
        ledger.record_lineage("1", {TRAINED: True})
        assert ledger.versions_using(TRAINED) == ["1"]
        with ledger.engine.connect() as conn:
            assert current_revision(conn) == SCHEMA_REVISION
            assert schema_diff(conn) == []
    finally:
        ledger.close()


def test_a_new_ledger_is_created_at_head_on_postgresql(url: str) -> None:
    Ledger(url).close()
    assert upgrade_ledger(url) == Upgrade(SCHEMA_REVISION, SCHEMA_REVISION)
