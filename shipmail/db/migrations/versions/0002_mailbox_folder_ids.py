"""mailboxes.folder_ids: the JMAP ids of each mailbox's system folders, by role

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 00:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("folder_ids", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("folder_ids")
