"""budget ledger in the database

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budget_months",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("gen", sa.String(16), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("spend", sa.Float(), nullable=False),
        sa.Column("loading_until", sa.Float(), nullable=True),
        sa.Column("loader", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("key_id", "period"),
    )
    op.create_table(
        "budget_holds",
        sa.Column("id", sa.String(16), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_budget_holds_month", "budget_holds", ["key_id", "period"])
    op.create_table(
        "budget_settled",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "period", "request_id"),
    )


def downgrade() -> None:
    op.drop_table("budget_settled")
    op.drop_index("ix_budget_holds_month", table_name="budget_holds")
    op.drop_table("budget_holds")
    op.drop_table("budget_months")
