"""credentials: app passwords, forwarding destinations (and mailboxes.forward_to), API keys
limited to some mailboxes (api_keys.mailbox_ids)

Revision ID: 0009
Revises: 0010
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import shipmail.db.types

revision = "0009"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_passwords",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("mailbox_id", sa.String(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", shipmail.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", shipmail.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", shipmail.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", shipmail.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_app_passwords_mailbox_id"), "app_passwords", ["mailbox_id"], unique=False)
    op.create_table(
        "mailbox_forwardings",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("mailbox_id", sa.String(length=64), nullable=False),
        sa.Column("destination", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("token_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("token_expires_at", shipmail.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("verification_sent_at", shipmail.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("verified_at", shipmail.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", shipmail.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", shipmail.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["mailbox_id"], ["mailboxes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox_id", "destination", name="uq_mailbox_forwardings_destination"),
    )
    op.create_index(op.f("ix_mailbox_forwardings_mailbox_id"), "mailbox_forwardings", ["mailbox_id"], unique=False)
    op.create_index(op.f("ix_mailbox_forwardings_token_digest"), "mailbox_forwardings", ["token_digest"], unique=True)
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("forward_to", sa.Text(), nullable=True))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mailbox_ids", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("mailbox_ids")
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("forward_to")
    op.drop_index(op.f("ix_mailbox_forwardings_token_digest"), table_name="mailbox_forwardings")
    op.drop_index(op.f("ix_mailbox_forwardings_mailbox_id"), table_name="mailbox_forwardings")
    op.drop_table("mailbox_forwardings")
    op.drop_index(op.f("ix_app_passwords_mailbox_id"), table_name="app_passwords")
    op.drop_table("app_passwords")
