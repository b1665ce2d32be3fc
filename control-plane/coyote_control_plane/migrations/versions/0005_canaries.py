"""canaries: a release run as a paper shadow beside a live deployment

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("canary", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "canaries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("deployment_name", sqlmodel.sql.sqltypes.AutoString(length=39), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("active_for", sa.Integer(), nullable=True),
        sa.Column("shadow_id", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("live_release_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("capital", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "active",
                "promoted",
                "discarded",
                "ended",
                name="canarystate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("started_by", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("ended_by", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("ended_ms", sa.BigInteger(), nullable=True),
        sa.Column("end_reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.id"]),
        sa.ForeignKeyConstraint(["live_release_id"], ["releases.id"]),
        sa.ForeignKeyConstraint(["org_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["release_id"], ["releases.id"]),
        sa.ForeignKeyConstraint(["shadow_id"], ["deployments.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_for"),
        sa.UniqueConstraint("org_id", "deployment_name", "number"),
    )
    with op.batch_alter_table("canaries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_canaries_org_id"), ["org_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_canaries_deployment_id"), ["deployment_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("canaries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_canaries_deployment_id"))
        batch_op.drop_index(batch_op.f("ix_canaries_org_id"))
    op.drop_table("canaries")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("canary")
