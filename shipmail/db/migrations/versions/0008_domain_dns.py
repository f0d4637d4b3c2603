"""domains: DNS verification state, ownership token, DKIM keys (encrypted), catch-all mailbox

Existing domains get an ownership token here; their DKIM keys are made on first use (they are
encrypted with the service secret, which migrations do not read). Domains that were already
``verified`` (by the operator) keep their status, marked ``verified_by = operator``.

Revision ID: 0008
Revises: 0013
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0013"
branch_labels = None
depends_on = None

_FLAGS = (
    "mx_verified",
    "spf_verified",
    "dkim_verified",
    "dkim_ed25519_verified",
    "dmarc_verified",
    "dmarc_managed_externally",
    "ownership_verified",
)


def upgrade() -> None:
    # Plain ADD COLUMNs, no batch copy of the table: SQLite cannot drop ``domains`` to recreate it
    # while ``mailboxes`` rows reference it (foreign keys are on).
    op.add_column("domains", sa.Column("verified_by", sa.String(length=16), nullable=True))
    op.add_column("domains", sa.Column("ownership_token", sa.String(length=64), nullable=False, server_default=""))
    for flag in _FLAGS:
        op.add_column("domains", sa.Column(flag, sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("domains", sa.Column("last_checked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("domains", sa.Column("last_check_error", sa.String(length=500), nullable=True))
    op.add_column("domains", sa.Column("dkim_private_key", sa.Text(), nullable=True))
    op.add_column("domains", sa.Column("dkim_public_key", sa.Text(), nullable=True))
    op.add_column("domains", sa.Column("dkim_ed25519_private_key", sa.Text(), nullable=True))
    op.add_column("domains", sa.Column("dkim_ed25519_public_key", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        if "catch_all_mailbox_id" in {c["name"] for c in sa.inspect(bind).get_columns("domains")}:
            pass  # left by a downgrade on SQLite (see below)
        else:
            # SQLite adds a column with its REFERENCES clause in place (alembic would drop the
            # clause).
            op.execute(
                "ALTER TABLE domains ADD COLUMN catch_all_mailbox_id VARCHAR(64) "
                "CONSTRAINT fk_domains_catch_all_mailbox_id REFERENCES mailboxes (id) ON DELETE SET NULL"
            )
    else:
        op.add_column("domains", sa.Column("catch_all_mailbox_id", sa.String(length=64), nullable=True))
        op.create_foreign_key(
            "fk_domains_catch_all_mailbox_id",
            "domains",
            "mailboxes",
            ["catch_all_mailbox_id"],
            ["id"],
            ondelete="SET NULL",
        )
    conn = op.get_bind()
    domains = sa.table(
        "domains",
        sa.column("id", sa.String),
        sa.column("status", sa.String),
        sa.column("ownership_token", sa.String),
        sa.column("verified_by", sa.String),
    )
    for (domain_id,) in conn.execute(sa.select(domains.c.id)).all():
        conn.execute(domains.update().where(domains.c.id == domain_id).values(ownership_token=secrets.token_hex(16)))
    conn.execute(domains.update().where(domains.c.status == "verified").values(verified_by="operator"))


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        op.drop_constraint("fk_domains_catch_all_mailbox_id", "domains", type_="foreignkey")
    for name in (
        "catch_all_mailbox_id",
        "dkim_ed25519_public_key",
        "dkim_ed25519_private_key",
        "dkim_public_key",
        "dkim_private_key",
        "last_check_error",
        "last_checked_at",
        *reversed(_FLAGS),
        "ownership_token",
        "verified_by",
    ):
        if sqlite and name == "catch_all_mailbox_id":
            # SQLite cannot drop a column that is part of a foreign key: blank it (the column stays,
            # unused by revision 0004's code).
            op.execute("UPDATE domains SET catch_all_mailbox_id = NULL")
            continue
        op.drop_column("domains", name)
