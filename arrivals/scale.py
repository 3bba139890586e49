"""PostgreSQL helpers for the scale profile (psycopg is the `scale` extra's driver)."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger("arrivals.scale")


def ensure_databases(postgres_url: str, names: list[str]) -> list[str]:
    """Create each database that does not exist yet; returns the ones created."""
    import psycopg
    from psycopg import sql

    created = []
    with psycopg.connect(f"{postgres_url.rstrip('/')}/postgres", autocommit=True) as conn:
        for name in names:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if conn.execute(query, (name,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                created.append(name)
                log.info("Created PostgreSQL database %s", name)
    return created


def drop_databases(postgres_url: str, names: list[str]) -> None:
    """Drop the databases (tests clean up after themselves)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{postgres_url.rstrip('/')}/postgres", autocommit=True) as conn:
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def migrate_prefect(prefect: str, env: Mapping[str, str], cwd: Path) -> str | None:
    """`prefect server database upgrade`, once before any API server; None, or its error."""
    result = subprocess.run(
        [prefect, "server", "database", "upgrade", "-y"],
        env=dict(env),
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    return None if result.returncode == 0 else result.stderr[-500:]
