"""The ledger's SQLAlchemy engine: SQLite tuned for several processes, any other URL as is."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - driver hook
    cursor = dbapi_connection.cursor()
    # WAL lets the status CLI read while the sensor or a retrain writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_manual_transactions(dbapi_connection, _record) -> None:  # pragma: no cover
    # Python's sqlite3 opens a transaction only before DML, so DDL would commit statement by
    # statement; with the driver's own handling off, `_begin_immediate` opens every one.
    dbapi_connection.isolation_level = None


def _begin_immediate(conn: sa.Connection) -> None:  # pragma: no cover - driver hook
    # IMMEDIATE takes the write lock at once: a second migrator waits instead of reading a
    # schema the first is about to change.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def ledger_engine(url: str, *, transactional_ddl: bool = False) -> Engine:
    """An engine on the ledger at `url` (a SQLite file's folder is created).

    `transactional_ddl`: on SQLite, schema changes commit or roll back as a whole (what a
    migration needs; PostgreSQL does so anyway).
    """
    if not url.startswith("sqlite:///"):
        return sa.create_engine(url, pool_pre_ping=True)
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    if transactional_ddl:
        sa.event.listen(engine, "connect", _sqlite_manual_transactions)
        sa.event.listen(engine, "begin", _begin_immediate)
    return engine
