"""deployments: whether their bot's orders are cancelled when its runtime loses its heartbeat

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        # Existing deployments get the new default: their orders are cancelled too.
        batch_op.add_column(
            sa.Column(
                "cancel_orders_on_heartbeat_loss",
                sa.Boolean(),
                nullable=False,
                server_default=sa.true(),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("cancel_orders_on_heartbeat_loss")
