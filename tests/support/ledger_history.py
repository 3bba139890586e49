"""The ledger as the first release made it (commit b9273e4: `metadata.create_all`), with rows.

Copied from that commit, not derived from the migrations: an upgrade test then checks the
baseline revision against what released code really created.
"""

from __future__ import annotations

import sqlalchemy as sa

first_release = sa.MetaData()

sa.Table(
    "files",
    first_release,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("stored_path", sa.Text, nullable=False),
    sa.Column("detected_at", sa.Float, nullable=False),
    sa.Column("announced_at", sa.Float),
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("claim_expires_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("rows", sa.Integer),
    sa.Column("model_version", sa.String(32)),
    sa.Column("reason", sa.Text),
)

sa.Table(
    "arrivals",
    first_release,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sha256", sa.String(64), sa.ForeignKey("files.sha256"), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("detected_via", sa.String(8), nullable=False),
    sa.Column("detected_at", sa.Float, nullable=False),
    sa.Column("disposition", sa.String(16), nullable=False),
    sa.Column("announced_at", sa.Float),
)

TRAINED = "a" * 64
CLAIMED = "b" * 64

FILES = [
    {
        "sha256": TRAINED,
        "name": "week_01.csv",
        "size": 2048,
        "state": "trained",
        "stored_path": "/home/data/archive/week_01.csv",
        "detected_at": 100.0,
        "announced_at": 100.5,
        "claimed_by": "run-1",
        "claim_expires_at": None,
        "finished_at": 103.0,
        "rows": 22,
        "model_version": "1",
        "reason": None,
    },
    {
        "sha256": CLAIMED,
        "name": "week_02.csv",
        "size": 4096,
        "state": "claimed",
        "stored_path": "/home/data/inbox/week_02.csv",
        "detected_at": 200.0,
        "announced_at": 200.5,
        "claimed_by": "run-2",
        "claim_expires_at": 500.0,
        "finished_at": None,
        "rows": None,
        "model_version": None,
        "reason": None,
    },
]

ARRIVALS = [
    {
        "sha256": TRAINED,
        "name": "week_01.csv",
        "path": "/home/data/inbox/week_01.csv",
        "size": 2048,
        "detected_via": "push",
        "detected_at": 100.0,
        "disposition": "new",
        "announced_at": 100.5,
    },
    {
        "sha256": TRAINED,
        "name": "copy_of_week_01.csv",
        "path": "/home/data/inbox/copy_of_week_01.csv",
        "size": 2048,
        "detected_via": "scan",
        "detected_at": 150.0,
        "disposition": "duplicate",
        "announced_at": None,
    },
    {
        "sha256": CLAIMED,
        "name": "week_02.csv",
        "path": "/home/data/inbox/week_02.csv",
        "size": 4096,
        "detected_via": "push",
        "detected_at": 200.0,
        "disposition": "new",
        "announced_at": 200.5,
    },
]


def create_first_release(url: str) -> None:
    """A ledger at `url` as the first release left it: its tables, two files, three arrivals."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            first_release.create_all(conn)
            conn.execute(first_release.tables["files"].insert(), FILES)
            conn.execute(first_release.tables["arrivals"].insert(), ARRIVALS)
    finally:
        engine.dispose()
