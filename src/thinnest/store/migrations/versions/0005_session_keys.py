"""sessions: the API key that started each one; api_keys: a key's cap on open sessions

A key's open sessions are counted to cap them (a copied publishable key could otherwise fill
every worker slot). Sessions stored before this revision have no key (``NULL``) and count for
no key; a key without a cap of its own takes the server's default.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE, not a batch (SQLite's batch copies the table, and dropping the old
    # ``sessions`` would cascade to its transcript turns and tool calls).
    op.add_column("sessions", sa.Column("api_key_id", sa.String(length=40), nullable=True))
    op.create_index("ix_sessions_api_key_status", "sessions", ["api_key_id", "status"])
    op.add_column("api_keys", sa.Column("max_open_sessions", sa.Integer(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN (SQLite 3.35+), for the reason above.
    op.drop_column("api_keys", "max_open_sessions")
    op.drop_index("ix_sessions_api_key_status", table_name="sessions")
    op.drop_column("sessions", "api_key_id")
