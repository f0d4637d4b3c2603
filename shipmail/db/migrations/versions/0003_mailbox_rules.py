"""mailboxes.rules: the inbox rules (JSON), compiled with the auto-reply and spam threshold into
the mailbox's delivery Sieve script

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 01:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rules", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailboxes", schema=None) as batch_op:
        batch_op.drop_column("rules")
