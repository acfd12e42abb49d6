"""workers: the state of the model services each worker's calls use

A worker whose model services (``THINNEST_MODELS_URL``) are down takes no calls: the API
answers ``503 models_unavailable`` instead of dispatching a call that could only apologise.
Rows stored before this revision (and workers with in-process models) say ``""``: no
services to be down.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "workers",
        sa.Column("models_status", sa.String(length=200), nullable=False, server_default=""),
    )


def downgrade() -> None:
    op.drop_column("workers", "models_status")
