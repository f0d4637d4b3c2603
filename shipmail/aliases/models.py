"""The ``mailbox_aliases`` table: one row per alias address.

An address is either a mailbox or an alias, never both and never two aliases: ``address`` is
unique here, and the services check the ``mailboxes`` table in both directions
(:func:`shipmail.aliases.service.create`, :func:`shipmail.mailboxes.service.create`). The rows of
a mailbox go with it (:func:`shipmail.mailboxes.service.delete`).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class MailboxAlias(SQLModel, table=True):
    """``address`` (= ``local_part@<the mailbox's domain>``) delivers into ``mailbox_id``."""

    __tablename__ = "mailbox_aliases"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=64)
    mailbox_id: str = Field(foreign_key="mailboxes.id", index=True, max_length=64)
    local_part: str = Field(max_length=64)
    address: str = Field(max_length=320, unique=True, index=True)
    description: str | None = Field(default=None, max_length=200)
    created_at: datetime = timestamp_field()
