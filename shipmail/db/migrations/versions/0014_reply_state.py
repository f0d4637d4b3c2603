"""inbox_thread_states (what the user set on a thread's reply state) and inbox_reply_drafts

Revision ID: 0014
Revises: 0015
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from shipmail.db.types import UTCDateTime

revision = "0014"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbox_thread_states",
        sa.Column("mailbox_id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("user_state", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("basis_email_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("updates", sa.Integer(), nullable=False),
        sa.Column("set_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("mailbox_id", "thread_id"),
    )
    op.create_table(
        "inbox_reply_drafts",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("mailbox_id", sa.String(length=64), nullable=False),
        sa.Column("thread_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("based_on_email_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("basis_email_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("expected_reply_version", sa.Integer(), nullable=False),
        sa.Column("reply_mode", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("to_addresses", sa.JSON(), nullable=False),
        sa.Column("cc_addresses", sa.JSON(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("email_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("sent_message_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_inbox_reply_drafts_mailbox_id"), "inbox_reply_drafts", ["mailbox_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_inbox_reply_drafts_mailbox_id"), table_name="inbox_reply_drafts")
    op.drop_table("inbox_reply_drafts")
    op.drop_table("inbox_thread_states")
