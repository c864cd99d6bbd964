"""batches forwarded to the provider's own Batch API

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("upstream", sa.String(64), nullable=True))
        batch.add_column(sa.Column("upstream_batch_id", sa.String(128), nullable=True))
        batch.add_column(
            sa.Column("upstream_ingested", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("upstream_ingested")
        batch.drop_column("upstream_batch_id")
        batch.drop_column("upstream")
