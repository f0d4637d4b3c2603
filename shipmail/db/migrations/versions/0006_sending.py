"""sending: the messages table (sent through the API), the outgoing queue, and the mailboxes'
send limits and counters

Revision ID: 0006
Revises: 0009
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from shipmail.db.types import UTCDateTime

revision = "0006"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "messages",
        sa.Column("id", text(length=64), nullable=False),
        sa.Column("organization_id", text(length=64), nullable=False),
        sa.Column("mailbox_id", text(length=64), nullable=False),
        sa.Column("thread_id", text(length=300), nullable=True),
        sa.Column("email_id", text(length=300), nullable=True),
        sa.Column("rfc_message_id", text(length=998), nullable=False),
        sa.Column("source_rfc_message_id", text(length=998), nullable=True),
        sa.Column("client_reference", text(length=255), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("subject", text(), nullable=True),
        sa.Column("from_address", text(length=320), nullable=False),
        sa.Column("to_addresses", sa.JSON(), nullable=False),
        sa.Column("cc_addresses", sa.JSON(), nullable=False),
        sa.Column("bcc_addresses", sa.JSON(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=True),
        sa.Column("source", text(length=16), nullable=False),
        sa.Column("status", text(length=16), nullable=False),
        sa.Column("last_error", text(length=1000), nullable=True),
        sa.Column("scheduled_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("organization_id", "mailbox_id", "rfc_message_id", "client_reference", "status"):
        op.create_index(op.f(f"ix_messages_{column}"), "messages", [column], unique=False)
    op.create_table(
        "outgoing",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spool_name", text(length=255), nullable=False),
        sa.Column("message_id", text(length=64), nullable=True),
        sa.Column("sender", text(length=998), nullable=False),
        sa.Column("from_domain", text(length=255), nullable=False),
        sa.Column("pending", sa.JSON(), nullable=False),
        sa.Column("refused", sa.JSON(), nullable=False),
        sa.Column("delivered", sa.JSON(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("status", text(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", text(length=1000), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("spool_name"),
    )
    op.create_index(op.f("ix_outgoing_message_id"), "outgoing", ["message_id"], unique=False)
    op.create_index(op.f("ix_outgoing_status"), "outgoing", ["status"], unique=False)
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("daily_send_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("monthly_send_limit", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("daily_send_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("send_day", text(length=10), nullable=True))
        batch_op.add_column(sa.Column("monthly_send_count", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("send_month", text(length=7), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        for column in (
            "send_month",
            "monthly_send_count",
            "send_day",
            "daily_send_count",
            "monthly_send_limit",
            "daily_send_limit",
        ):
            batch_op.drop_column(column)
    op.drop_index(op.f("ix_outgoing_status"), table_name="outgoing")
    op.drop_index(op.f("ix_outgoing_message_id"), table_name="outgoing")
    op.drop_table("outgoing")
    for column in ("organization_id", "mailbox_id", "rfc_message_id", "client_reference", "status"):
        op.drop_index(op.f(f"ix_messages_{column}"), table_name="messages")
    op.drop_table("messages")
