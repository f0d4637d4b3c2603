"""The ``mailbox_forwardings`` table: the forwarding destinations of a mailbox, pending or active.

A destination is ``pending`` until someone follows the confirmation link sent to it, then
``active``. The link's token is stored only as its SHA-256 (``token_digest``, hex): it is 256
random bits, so a plain digest is enough (nothing to brute-force), and a database reader cannot
confirm a destination. The token is single-use (the digest is cleared on confirmation) and
expires (``token_expires_at``). Rows go with their mailbox (``ON DELETE CASCADE``).

The active destinations are also kept on the mailbox row (``mailboxes.forward_to``), the source of
the mailbox's delivery script (:mod:`shipmail.delivery.script`), changed in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class ForwardingStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"


class MailboxForwarding(SQLModel, table=True):
    """One forwarding destination of one mailbox (unique per mailbox)."""

    __tablename__ = "mailbox_forwardings"
    __table_args__ = (sa.UniqueConstraint("mailbox_id", "destination", name="uq_mailbox_forwardings_destination"),)

    id: str = Field(primary_key=True, max_length=64)
    mailbox_id: str = Field(
        sa_column=sa.Column(
            "mailbox_id", sa.String(64), sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    #: The destination address, lower-cased.
    destination: str = Field(max_length=320)
    status: str = Field(default=ForwardingStatus.PENDING.value, max_length=16)
    #: SHA-256 (hex) of the pending confirmation token; NULL once confirmed.
    token_digest: str | None = Field(default=None, max_length=64, unique=True, index=True)
    token_expires_at: datetime | None = timestamp_field(nullable=True)
    verification_sent_at: datetime | None = timestamp_field(nullable=True)
    verified_at: datetime | None = timestamp_field(nullable=True)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
