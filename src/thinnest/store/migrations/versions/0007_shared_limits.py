"""rate_limits and leases: what API processes share instead of keeping it each in memory

``rate_limits`` holds each key's ``/voice/start`` rate limit (GCRA: one row, one number), so a
key gets its rate across every API process, not once per process. ``leases`` names the one
process that runs the lost-session backstop.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(length=100), primary_key=True),
        sa.Column("tat", sa.Float(), nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=100), primary_key=True),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("rate_limits")
