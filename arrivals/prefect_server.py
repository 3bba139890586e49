"""Run `prefect server ...` with write transactions that take SQLite's write lock up front.

Prefect's server opens its write transactions on SQLite as `BEGIN DEFERRED`: the transaction
reads, then asks for the write lock. If any other connection committed in between (the event
persister, the trigger's bucket, a worker's poll: they all write every second), SQLite refuses
the upgrade at once with SQLITE_BUSY (its busy timeout cannot help a stale snapshot). The
server answers 503 and the client retries after 2, 4, 8 s. Measured here, most
`run-deployment` actions of the retrain automation paid that 2 s (sometimes 6 s), which alone
broke the issue-4 target of Running within 3 s.

Prefect's own SQLite configuration explains the cure in a comment ("this can be resolved by
using the IMMEDIATE transaction mode") and uses it for the trigger's writes. Here every write
transaction begins IMMEDIATE: a writer that finds the lock taken waits (busy timeout 60 s)
instead of failing. SQLite allows one writer at a time anyway, and reads outside write
transactions are untouched. The configuration is installed through Prefect's public
injection point (`set_database_config`), before the server builds its app. On PostgreSQL
nothing changes.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from prefect.server.database.configurations import AioSqliteConfiguration
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction


class ImmediateWriteSqliteConfiguration(AioSqliteConfiguration):
    """Prefect's SQLite configuration, with every write transaction `BEGIN IMMEDIATE`."""

    @asynccontextmanager
    async def begin_transaction(
        self, session: AsyncSession, with_for_update: bool = False
    ) -> AsyncGenerator[AsyncSessionTransaction, None]:
        async with super().begin_transaction(session, with_for_update=True) as transaction:
            yield transaction


def install_database_config() -> bool:
    """Use `ImmediateWriteSqliteConfiguration` if Prefect's database is SQLite; say if it did."""
    from prefect.server.database.dependencies import set_database_config
    from prefect.server.utilities.database import get_dialect
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    if get_dialect(url).name != "sqlite":
        return False
    set_database_config(ImmediateWriteSqliteConfiguration(connection_url=url))
    return True


def main() -> None:
    """`python -m arrivals.prefect_server <prefect server args>`, e.g. `start --port 4200`."""
    install_database_config()
    from prefect.cli import app

    sys.argv = ["prefect", "server", *sys.argv[1:]]  # Prefect's CLI reads its arguments there
    app()


if __name__ == "__main__":
    main()
