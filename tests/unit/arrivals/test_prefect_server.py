"""The Prefect server launcher: write transactions on SQLite cannot fail on a stale read.

The race is reproduced with Prefect's own database configuration on a real SQLite file: a
write transaction reads, another connection commits a write, then the first one writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.exc
from prefect.server.database.configurations import AioSqliteConfiguration

from arrivals.prefect_server import ImmediateWriteSqliteConfiguration

# How long the first transaction holds off between its read and its write, waiting for the
# second one to commit in between. With IMMEDIATE the second one cannot, so this is a pause.
HOLD_SECONDS = 0.5


async def _read_then_write_around_another_commit(config: AioSqliteConfiguration) -> list[str]:
    engine = await config.engine()
    async with engine.begin() as connection:
        await connection.execute(sa.text("CREATE TABLE IF NOT EXISTS t (name TEXT)"))
    first_has_read = asyncio.Event()
    second_committed = asyncio.Event()

    async def first() -> None:
        session = await config.session(engine)
        async with session, config.begin_transaction(session):
            await session.execute(sa.text("SELECT count(*) FROM t"))
            first_has_read.set()
            # With IMMEDIATE the second writer waits for us: this times out.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(second_committed.wait(), HOLD_SECONDS)
            await session.execute(sa.text("INSERT INTO t VALUES ('first')"))

    async def second() -> None:
        await first_has_read.wait()
        session = await config.session(engine)
        async with session, config.begin_transaction(session):
            await session.execute(sa.text("INSERT INTO t VALUES ('second')"))
        second_committed.set()

    try:
        await asyncio.gather(first(), second())
        async with engine.connect() as connection:
            rows = await connection.execute(sa.text("SELECT name FROM t ORDER BY name"))
            return [row[0] for row in rows]
    finally:
        await engine.dispose()


def test_prefects_default_configuration_fails_on_a_stale_read(tmp_path: Path) -> None:
    """The failure the launcher exists for (the server turns it into a 503 and a 2 s retry)."""
    config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    with pytest.raises(sqlalchemy.exc.OperationalError, match="database is locked"):
        asyncio.run(_read_then_write_around_another_commit(config))


def test_immediate_write_transactions_wait_instead_of_failing(tmp_path: Path) -> None:
    config = ImmediateWriteSqliteConfiguration(
        connection_url=f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"
    )
    assert asyncio.run(_read_then_write_around_another_commit(config)) == ["first", "second"]


def test_the_launcher_installs_the_configuration_only_for_sqlite(tmp_path: Path) -> None:
    """Run in a fresh interpreter: the injected configuration is process-wide."""
    probe = (
        "from arrivals.prefect_server import install_database_config\n"
        "from prefect.server.database.dependencies import provide_database_interface\n"
        "installed = install_database_config()\n"
        "print(installed, type(provide_database_interface().database_config).__name__)\n"
    )
    urls = {
        f"sqlite+aiosqlite:///{tmp_path}/prefect.db": "True ImmediateWriteSqliteConfiguration",
        "postgresql+asyncpg://u:p@127.0.0.1:1/prefect": "False AsyncPostgresConfiguration",
    }
    for url, expected in urls.items():
        result = subprocess.run(
            [sys.executable, "-c", probe],
            env={"PREFECT_API_DATABASE_CONNECTION_URL": url, "PREFECT_HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            check=True,
        )
        assert result.stdout.split("\n")[-2] == expected, result.stderr
