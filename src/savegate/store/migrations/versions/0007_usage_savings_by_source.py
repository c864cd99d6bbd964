"""usage: cache writes and savings by source

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SAVINGS = (
    "saving_discount_usd",
    "saving_cache_usd",
    "saving_semantic_usd",
    "saving_prompt_cache_usd",
    "saving_route_usd",
)


def upgrade() -> None:
    with op.batch_alter_table("usage") as table:
        table.add_column(
            sa.Column("cache_write_tokens", sa.Integer(), nullable=False, server_default="0")
        )
        for name in SAVINGS:
            table.add_column(sa.Column(name, sa.Float(), nullable=False, server_default="0"))
    # Until now the only saving was the provider discount (list - paid), and cache hits
    # were never recorded: the older rows' totals stay what they were.
    op.execute(
        "UPDATE usage SET saving_discount_usd = list_cost_usd - cost_usd "
        "WHERE list_cost_usd <> cost_usd"
    )


def downgrade() -> None:
    with op.batch_alter_table("usage") as table:
        for name in reversed(SAVINGS):
            table.drop_column(name)
        table.drop_column("cache_write_tokens")
