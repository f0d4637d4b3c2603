"""The ``inbox_thread_states`` table: what a user set on a thread's reply state
(``updateMailboxInboxThreadReplyState``), keyed by mailbox and JMAP thread id.

Only the user's part is stored; the rest of a thread's reply state is derived from its messages
on every read (:mod:`shipmail.inbox.replystate`). ``updates`` counts the user's changes (it is
part of ``reply_version`` and the optimistic check of concurrent updates); ``basis_email_id``
is the JMAP id of the thread's newest message when the user set ``user_state``: the setting
holds until a newer message arrives. Rows go with their mailbox (``ON DELETE CASCADE``).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class InboxThreadState(SQLModel, table=True):
    """The user's reply state of one thread (``mailbox_id``, JMAP ``thread_id``)."""

    __tablename__ = "inbox_thread_states"

    mailbox_id: str = Field(
        sa_column=sa.Column(
            "mailbox_id", sa.String(64), sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True
        )
    )
    thread_id: str = Field(primary_key=True, max_length=300)
    user_state: str | None = Field(default=None, max_length=32)
    basis_email_id: str | None = Field(default=None, max_length=300)
    updates: int = Field(default=0)
    set_at: datetime | None = timestamp_field(nullable=True)
    updated_at: datetime = timestamp_field()
