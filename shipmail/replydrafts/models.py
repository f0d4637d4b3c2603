"""The ``inbox_reply_drafts`` table: one row per reply draft (``drf_...``).

The draft is also the mailbox's own Drafts-folder message (``email_id``, ``$draft``), so a mail
client sees it; the row keeps what binds it: the thread (JMAP ``thread_id``), the inbound
message it answers (``based_on_email_id``), the thread's ``reply_version`` and newest message
(``basis_email_id``) when it was made, and its recipients as derived then.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class DraftStatus(StrEnum):
    """``InboxReplyDraft.status``."""

    DRAFT = "draft"
    SENDING = "sending"
    SENT = "sent"
    INVALIDATED = "invalidated"
    FAILED = "failed"


class InboxReplyDraftRow(SQLModel, table=True):
    __tablename__ = "inbox_reply_drafts"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(max_length=64)
    mailbox_id: str = Field(
        sa_column=sa.Column(
            "mailbox_id", sa.String(64), sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    thread_id: str = Field(max_length=300)
    based_on_email_id: str | None = Field(default=None, max_length=300)
    basis_email_id: str | None = Field(default=None, max_length=300)
    expected_reply_version: int
    reply_mode: str = Field(max_length=16)
    status: str = Field(default=DraftStatus.DRAFT.value, max_length=16)
    to_addresses: list[dict[str, Any]] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    cc_addresses: list[dict[str, Any]] = Field(default_factory=list, sa_column=sa.Column(sa.JSON(), nullable=False))
    subject: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    text: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    html: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    email_id: str | None = Field(default=None, max_length=300)
    sent_message_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
    sent_at: datetime | None = timestamp_field(nullable=True)
