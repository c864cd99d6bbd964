"""client rate limits in the database

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_permits",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("admitted_at", sa.Float(), nullable=False),
        sa.Column("request", sa.Boolean(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rate_permits_key", "rate_permits", ["key_id", "admitted_at"])
    op.create_index("ix_rate_permits_admitted", "rate_permits", ["admitted_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_permits_admitted", table_name="rate_permits")
    op.drop_index("ix_rate_permits_key", table_name="rate_permits")
    op.drop_table("rate_permits")
