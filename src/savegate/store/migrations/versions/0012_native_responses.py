"""where each response a native upstream keeps was made, and which keys may reach it

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "native_responses",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("provider", sa.String(100), nullable=False),
        sa.Column("account", sa.String(16), nullable=True),
        sa.Column("replayed", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("native_responses")
