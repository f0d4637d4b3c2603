"""The ``mailboxes`` table. ``password_hash`` is an argon2id PHC string: no plain-text password is stored.

``state`` records a write that spans the database and the mail server BEFORE the mail server is
touched (see :mod:`shipmail.mailboxes.service` and :mod:`shipmail.mailboxes.reconcile`):
``provisioning`` (the row is committed, the account is being made) -> ``active``; ``active`` ->
``deleting`` (committed, the account is being removed) -> the row is deleted. Only ``active``
mailboxes are usable; a row left in another state by a crash is completed or rolled back by the
reconciliation.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import PydanticJSON, timestamp_field
from shipmail.rules.schemas import RULES, MailboxRule
from shipmail.settings.schemas import AUTO_REPLY, THRESHOLD_DEFAULT, AutoReply


class MailboxState(StrEnum):
    """The ``mailboxes.state`` values (``active`` for every row made before the column existed)."""

    PROVISIONING = "provisioning"
    ACTIVE = "active"
    DELETING = "deleting"


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
    spam_filter_threshold: int = Field(default=THRESHOLD_DEFAULT)
    #: JSON (shipmail.settings.schemas.AutoReply); NULL or unreadable: disabled.
    auto_reply: AutoReply = Field(
        default_factory=AutoReply,
        sa_column=sa.Column("auto_reply", PydanticJSON(AUTO_REPLY, AutoReply, lenient=True), nullable=True),
    )
    folder_ids: str | None = Field(default=None)  # JSON {JMAP role: Mailbox id} of the system folders
    #: JSON list of the inbox rules (PUT /rules; shipmail.rules.schemas.MailboxRule), the source of truth.
    rules: list[MailboxRule] = Field(
        default_factory=list, sa_column=sa.Column("rules", PydanticJSON(RULES, list), nullable=True)
    )
    #: :class:`MailboxState`: ``provisioning`` / ``deleting`` while a create / delete is under way.
    state: str = Field(
        default=MailboxState.ACTIVE.value,
        max_length=16,
        index=True,
        sa_column_kwargs={"server_default": MailboxState.ACTIVE.value},
    )
    suspended_at: datetime | None = timestamp_field(nullable=True)
    #: When a scheduled deletion purges the mailbox (``DELETE ...?grace_days=N``); null: none.
    #: Until then logins are refused and inbound mail answered 550, the mail kept; a restore
    #: clears it (:mod:`shipmail.mailboxes.lifecycle`).
    deletion_scheduled_at: datetime | None = timestamp_field(nullable=True)
    #: The mail server's storage limit for the account, in bytes; null: no limit.
    storage_quota_bytes: int | None = Field(default=None, sa_type=sa.BigInteger)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
