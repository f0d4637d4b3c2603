"""mailbox exports and imports: mailbox_exports, mailbox_imports, import_files, import_items

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

from shipmail.db.types import UTCDateTime

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def _s(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "mailbox_exports",
        sa.Column("id", _s(64), primary_key=True),
        sa.Column("organization_id", _s(64), nullable=False, index=True),
        sa.Column("mailbox_id", _s(64), nullable=False, index=True),
        sa.Column("status", _s(16), nullable=False, index=True),
        sa.Column("format_version", sa.Integer(), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=True),
        sa.Column("message_count", sa.Integer(), nullable=True),
        sa.Column("folder_count", sa.Integer(), nullable=True),
        sa.Column("messages_done", sa.Integer(), nullable=False),
        sa.Column("messages_total", sa.Integer(), nullable=True),
        sa.Column("error_code", _s(32), nullable=True),
        sa.Column("error", _s(500), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "mailbox_imports",
        sa.Column("id", _s(64), primary_key=True),
        sa.Column("organization_id", _s(64), nullable=False, index=True),
        sa.Column("mailbox_id", _s(64), nullable=False, index=True),
        sa.Column("kind", _s(8), nullable=False),
        sa.Column("provider", _s(32), nullable=False),
        sa.Column("source_address", _s(320), nullable=True),
        sa.Column("status", _s(16), nullable=False, index=True),
        sa.Column("status_detail", _s(500), nullable=True),
        sa.Column("error", _s(500), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("bytes_imported", sa.BigInteger(), nullable=False),
        sa.Column("folders", sa.JSON(), nullable=False),
        sa.Column("failures", sa.JSON(), nullable=False),
        sa.Column("created_folders", sa.JSON(), nullable=False),
        sa.Column("file_ids", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("cursor", sa.JSON(), nullable=False),
        sa.Column("pending_blobs", sa.JSON(), nullable=False),
        sa.Column("imap_host", _s(255), nullable=True),
        sa.Column("imap_port", sa.Integer(), nullable=True),
        sa.Column("secret", _s(2000), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "import_files",
        sa.Column("id", _s(64), primary_key=True),
        sa.Column("organization_id", _s(64), nullable=False, index=True),
        sa.Column("mailbox_id", _s(64), nullable=False, index=True),
        sa.Column("file_name", _s(255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("state", _s(16), nullable=False),
        sa.Column("import_id", _s(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "import_items",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("import_id", _s(64), nullable=False, index=True),
        sa.Column("email_id", _s(255), nullable=False),
        sa.Column("blob_id", _s(255), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("import_items")
    op.drop_table("import_files")
    op.drop_table("mailbox_imports")
    op.drop_table("mailbox_exports")
