"""lineage: which model versions were trained on which files.

Revision ID: 0003_lineage
Revises: 0002_previous_claimed_by
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_lineage"
down_revision = "0002_previous_claimed_by"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty for the files trained before: no record says which versions used them.
    op.create_table(
        "lineage",
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("files.sha256"), primary_key=True),
        sa.Column("new", sa.Boolean, nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("lineage")
