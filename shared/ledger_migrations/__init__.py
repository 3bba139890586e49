"""The ledger's schema migrations (Alembic), run on a connection we open; no alembic.ini.

`upgrade_ledger(url)` brings any ledger to the head revision: a fresh one is created at head
and stamped, one from before migrations existed is recognised by its shape and stamped, then
the revisions in `versions/` run in one transaction. `arrivals up` calls it before any
service starts; `Ledger` calls it for a database that has no ledger yet.

A schema change is a change to `shared/ledger_schema.py` plus a revision here (written with
`batch_alter_table`, which SQLite needs to alter a table), and a new `SCHEMA_REVISION`:
    .venv/bin/python -c "from shared.ledger_migrations import write_revision as w; w('what')"
drafts the next one from the difference (read it: renames come out as drop + add); the unit
tests fail until the revision exists and matches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from shared.ledger_engine import ledger_engine
from shared.ledger_schema import VERSION_TABLE, LedgerSchemaError, metadata

log = logging.getLogger("arrivals.ledger")
SCRIPT_LOCATION = Path(__file__).resolve().parent
FIRST_RELEASE = "0001_first_release"
# Two `up`s of homes that share one PostgreSQL ledger take turns (any constant key will do).
_PG_LOCK_KEY = 0x4C454447  # "LEDG"


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade_ledger` did: the revision before (None: no ledger yet) and after."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def config(connection: sa.Connection | None = None) -> Config:
    """Alembic's configuration for the ledger, in code (env.py takes `connection`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.set_main_option("file_template", "%%(rev)s")  # the id says it all: 0002_previous_...
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(config()).get_current_head()
    assert head is not None, "the ledger's migrations have no head"
    return head


def current_revision(conn: sa.Connection) -> str | None:
    """The revision the ledger is stamped with (None: unstamped or no ledger)."""
    context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def migrate(conn: sa.Connection, target: str = "head") -> None:
    """Run the revisions from the stamped one (or none) up to `target`."""
    command.upgrade(config(conn), target)


def stamp(conn: sa.Connection, revision: str) -> None:
    command.stamp(config(conn), revision)


def schema_diff(conn: sa.Connection) -> list:
    """How the database's schema differs from `ledger_schema.metadata` ([] when equal)."""
    context = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
    )
    return compare_metadata(context, metadata)


def legacy_revision(conn: sa.Connection) -> str | None:
    """The revision of a ledger `create_all` made before migrations existed, by its shape.

    Frozen to the schemas made that way; None when there is no ledger at all.
    """
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    if "files" not in tables:
        return None
    if "previous_claimed_by" not in {c["name"] for c in inspector.get_columns("files")}:
        return FIRST_RELEASE
    if "lineage" not in tables:
        return "0002_previous_claimed_by"
    # alerts_sent came with the migrations, but a home of that work-in-progress may have it.
    return "0004_alerts_sent" if "alerts_sent" in tables else "0003_lineage"


def _upgrade_in(conn: sa.Connection) -> Upgrade:
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    before = current_revision(conn)
    if before is None:
        legacy = legacy_revision(conn)
        if legacy is None:
            # A new ledger: the tables as the code declares them (the head's schema, a test
            # holds them equal), stamped so later revisions know where it starts.
            metadata.create_all(conn)
            stamp(conn, "head")
            return Upgrade(None, head_revision())
        stamp(conn, legacy)
        before = legacy
    try:
        ScriptDirectory.from_config(config()).get_revision(before)
    except CommandError:
        raise LedgerSchemaError(
            f"the ledger is at schema revision {before!r}, which this Arrivals does not know "
            "(was it upgraded by a newer version?)"
        ) from None
    head = head_revision()
    if before != head:
        migrate(conn)
    return Upgrade(before, head)


def upgrade_ledger(url: str) -> Upgrade:
    """Bring the ledger at `url` to the head revision, in one transaction (creating it if new)."""
    engine = ledger_engine(url, transactional_ddl=True)
    try:
        with engine.begin() as conn:
            done = _upgrade_in(conn)
    finally:
        engine.dispose()
    if done.changed and done.before is not None:
        log.info("Ledger schema upgraded from revision %s to %s", done.before, done.after)
    return done


def write_revision(message: str) -> Path:
    """Draft the next revision from how `ledger_schema` differs from head (for developers)."""
    slug = "_".join(message.lower().split())[:24]
    rev_id = f"{int(head_revision()[:4]) + 1:04d}_{slug}"  # fits version_num's 32 characters
    engine = ledger_engine("sqlite://")
    try:
        with engine.begin() as conn:
            migrate(conn)
            script = command.revision(config(conn), message, autogenerate=True, rev_id=rev_id)
    finally:
        engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)
