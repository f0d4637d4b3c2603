"""The ``app_passwords`` table: one row per app password of a mailbox.

``password_hash`` is an argon2id PHC string (argon2-cffi defaults): the secret itself is shown
once, in the 201 of ``createMailboxAppPassword``, and stored nowhere. A row is never deleted by
revocation (``revoked_at`` is set); it goes with its mailbox (``ON DELETE CASCADE``).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class AppPassword(SQLModel, table=True):
    """An app password: usable at login while ``revoked_at`` is NULL and ``expires_at`` is ahead."""

    __tablename__ = "app_passwords"

    id: str = Field(primary_key=True, max_length=64)
    mailbox_id: str = Field(
        sa_column=sa.Column(
            "mailbox_id", sa.String(64), sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    name: str = Field(max_length=100)
    password_hash: str = Field(max_length=200)
    created_at: datetime = timestamp_field()
    expires_at: datetime = timestamp_field()
    last_used_at: datetime | None = timestamp_field(nullable=True)
    revoked_at: datetime | None = timestamp_field(nullable=True)
