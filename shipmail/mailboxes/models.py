"""The ``mailboxes`` table. ``password_hash`` is an argon2id PHC string: no plain-text password is stored."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class Mailbox(SQLModel, table=True):
    """A hosted mailbox: one account on the mail server, ``address`` = ``local_part@domain``."""

    __tablename__ = "mailboxes"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=64)
    domain_id: str = Field(foreign_key="domains.id", index=True, max_length=64)
    local_part: str = Field(max_length=64)
    address: str = Field(max_length=320, unique=True, index=True)
    display_name: str | None = Field(default=None, max_length=200)
    password_hash: str = Field(max_length=200)
    spam_filter_threshold: int = Field(default=5)
    auto_reply: str | None = Field(default=None)  # JSON of the auto-reply settings
    folder_ids: str | None = Field(default=None)  # JSON {JMAP role: Mailbox id} of the system folders
    rules: str | None = Field(default=None)  # JSON list of the inbox rules (PUT /rules), source of truth
    suspended_at: datetime | None = timestamp_field(nullable=True)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
