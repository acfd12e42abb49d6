"""console_sessions, sessions.recording_started_at, webhook secret rotation: the console

``console_sessions`` holds the console's sign-ins: the browser keeps only a random token in
an HttpOnly cookie; the table keeps its SHA-256, the key it was opened with (a revoked key
ends its console sessions), the CSRF token the page sends back on every write, and when it
expires or was signed out. ``sessions.recording_started_at`` is the wall-clock time of a
recording's first sample, so the console can follow the transcript as the recording plays.
``webhook_endpoints.previous_secret`` keeps a rotated-out signing secret, which signs
deliveries beside the new one until ``previous_secret_until``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A rotated webhook secret signs on beside the new one for a grace period.
    op.add_column(
        "webhook_endpoints", sa.Column("previous_secret", sa.String(length=64), nullable=True)
    )
    op.add_column(
        "webhook_endpoints",
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False, unique=True),
        sa.Column(
            "owner_id",
            sa.String(length=40),
            sa.ForeignKey("owners.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "api_key_id",
            sa.String(length=40),
            sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_console_sessions_owner_id", "console_sessions", ["owner_id"])
    # Plain ALTER TABLE, not a batch (SQLite's batch copies the table, and dropping the old
    # ``sessions`` would cascade to its transcript turns and tool calls).
    op.add_column(
        "sessions", sa.Column("recording_started_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("webhook_endpoints", "previous_secret_until")
    op.drop_column("webhook_endpoints", "previous_secret")
    op.drop_column("sessions", "recording_started_at")  # ALTER TABLE … DROP COLUMN
    op.drop_table("console_sessions")
