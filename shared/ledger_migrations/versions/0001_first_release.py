"""The first released schema (commit b9273e4): files and the names they arrived under.

Revision ID: 0001_first_release
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_first_release"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
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
    # The names create_all gave the indexes of `index=True` columns.
    op.create_index("ix_files_state", "files", ["state"])
    op.create_table(
        "arrivals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("files.sha256"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("detected_via", sa.String(8), nullable=False),
        sa.Column("detected_at", sa.Float, nullable=False),
        sa.Column("disposition", sa.String(16), nullable=False),
        sa.Column("announced_at", sa.Float),
    )
    op.create_index("ix_arrivals_sha256", "arrivals", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_arrivals_sha256", "arrivals")
    op.drop_table("arrivals")
    op.drop_index("ix_files_state", "files")
    op.drop_table("files")
