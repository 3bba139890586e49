"""files.previous_claimed_by: the run that held a claim before, whose partial work is undone.

Revision ID: 0002_previous_claimed_by
Revises: 0001_first_release
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_previous_claimed_by"
down_revision = "0001_first_release"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: no earlier claim is known for the files already there.
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("previous_claimed_by", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_column("previous_claimed_by")
