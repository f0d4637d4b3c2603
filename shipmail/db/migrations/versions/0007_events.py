"""events: the event log (message.received, mailbox.rule_matched, ...); mailboxes count the
messages received this month (received_month, received_count)

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from shipmail.db.types import UTCDateTime

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("mailbox_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_id", "events", ["id"], unique=True)
    op.create_index("ix_events_organization_id", "events", ["organization_id"])
    op.create_index("ix_events_created_at", "events", ["created_at"])
    op.create_index("ix_events_mailbox_seq", "events", ["mailbox_id", "seq"])
    op.create_index("ux_events_mailbox_type_key", "events", ["mailbox_id", "type", "key"], unique=True)
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("received_month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=True))
        batch_op.add_column(sa.Column("received_count", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("received_count")
        batch_op.drop_column("received_month")
    op.drop_table("events")
