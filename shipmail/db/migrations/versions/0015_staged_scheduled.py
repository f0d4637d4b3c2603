"""staged attachments, their one-time upload tokens, scheduled sends (what a scheduled message
keeps until it is dispatched), and client_reference unique per organisation

Revision ID: 0015
Revises: 0005
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from shipmail.db.types import UTCDateTime

revision = "0015"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "staged_attachments",
        sa.Column("id", text(length=64), nullable=False),
        sa.Column("organization_id", text(length=64), nullable=False),
        sa.Column("mailbox_id", text(length=64), nullable=False),
        sa.Column("key_id", text(length=64), nullable=False),
        sa.Column("filename", text(length=256), nullable=False),
        sa.Column("content_type", text(length=256), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", text(length=64), nullable=False),
        sa.Column("blob_id", text(length=300), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_staged_attachments_mailbox_id"), "staged_attachments", ["mailbox_id"], unique=False)
    op.create_index(op.f("ix_staged_attachments_expires_at"), "staged_attachments", ["expires_at"], unique=False)
    op.create_table(
        "staged_attachment_uploads",
        sa.Column("token_hash", text(length=64), nullable=False),
        sa.Column("organization_id", text(length=64), nullable=False),
        sa.Column("mailbox_id", text(length=64), nullable=False),
        sa.Column("key_id", text(length=64), nullable=False),
        sa.Column("filename", text(length=256), nullable=False),
        sa.Column("content_type", text(length=256), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", text(length=64), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index(
        op.f("ix_staged_attachment_uploads_expires_at"), "staged_attachment_uploads", ["expires_at"], unique=False
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity_id", text(length=300), nullable=True))
        batch_op.add_column(sa.Column("reply_email_id", text(length=300), nullable=True))
        batch_op.add_column(sa.Column("body_text", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("body_html", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("in_reply_to", text(length=998), nullable=True))
        batch_op.add_column(sa.Column("references", sa.JSON(), nullable=True))
        batch_op.create_index("ux_messages_org_client_reference", ["organization_id", "client_reference"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ux_messages_org_client_reference")
        for column in ("references", "in_reply_to", "body_html", "body_text", "reply_email_id", "identity_id"):
            batch_op.drop_column(column)
    op.drop_index(op.f("ix_staged_attachment_uploads_expires_at"), table_name="staged_attachment_uploads")
    op.drop_table("staged_attachment_uploads")
    op.drop_index(op.f("ix_staged_attachments_expires_at"), table_name="staged_attachments")
    op.drop_index(op.f("ix_staged_attachments_mailbox_id"), table_name="staged_attachments")
    op.drop_table("staged_attachments")
