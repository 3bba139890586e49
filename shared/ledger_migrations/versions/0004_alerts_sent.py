"""alerts_sent: which alerts went out about which file detection, so each goes out once.

Revision ID: 0004_alerts_sent
Revises: 0003_lineage
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_alerts_sent"
down_revision = "0003_lineage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Empty: files already pending are alerted about once, from the next sweep on.
    op.create_table(
        "alerts_sent",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("sha256", sa.String(64), sa.ForeignKey("files.sha256"), primary_key=True),
        sa.Column("detected_at", sa.Float, primary_key=True),
        sa.Column("sent_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alerts_sent")
