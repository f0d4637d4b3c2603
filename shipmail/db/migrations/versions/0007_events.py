"""events: the event log (message.received, mailbox.rule_matched, ...); mailboxes count the
messages received this month (received_month, received_count); webhooks, their deliveries and
attempts

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from shipmail.db.types import UTCDateTime

revision = "0007"
down_revision = "0006"
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
    S = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "webhooks",
        sa.Column("id", S(length=64), primary_key=True),
        sa.Column("organization_id", S(length=64), nullable=False),
        sa.Column("url", S(length=2048), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("description", S(length=500), nullable=True),
        sa.Column("secret", S(length=400), nullable=False),
        sa.Column("previous_secret", S(length=400), nullable=True),
        sa.Column("previous_secret_expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("failing_since", UTCDateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhooks_organization_id", "webhooks", ["organization_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", S(length=64), primary_key=True),
        sa.Column("organization_id", S(length=64), nullable=False),
        sa.Column("webhook_id", S(length=64), nullable=False),
        sa.Column("event_id", S(length=64), nullable=False),
        sa.Column("event_type", S(length=64), nullable=False),
        sa.Column("mailbox_id", S(length=64), nullable=True),
        sa.Column("message_id", S(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", S(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", S(length=1000), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("replayed_from_delivery_id", S(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_deliveries_organization_id", "webhook_deliveries", ["organization_id"])
    op.create_index("ix_webhook_deliveries_webhook_id", "webhook_deliveries", ["webhook_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("delivery_id", S(length=64), nullable=False),
        sa.Column("attempted_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("response_body", S(length=1100), nullable=True),
        sa.Column("error", S(length=1000), nullable=True),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("received_month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=True))
        batch_op.add_column(sa.Column("received_count", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("received_count")
        batch_op.drop_column("received_month")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
    op.drop_table("events")
