"""mailbox lifecycle: scheduled deletion, storage quota, aliases

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from shipmail.db.types import UTCDateTime

revision = "0011"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deletion_scheduled_at", UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("storage_quota_bytes", sa.BigInteger(), nullable=True))
    op.create_table(
        "mailbox_aliases",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("mailbox_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("local_part", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"]),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mailbox_aliases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mailbox_aliases_address"), ["address"], unique=True)
        batch_op.create_index(batch_op.f("ix_mailbox_aliases_mailbox_id"), ["mailbox_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mailbox_aliases_organization_id"), ["organization_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mailbox_aliases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mailbox_aliases_organization_id"))
        batch_op.drop_index(batch_op.f("ix_mailbox_aliases_mailbox_id"))
        batch_op.drop_index(batch_op.f("ix_mailbox_aliases_address"))
    op.drop_table("mailbox_aliases")
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("storage_quota_bytes")
        batch_op.drop_column("deletion_scheduled_at")
