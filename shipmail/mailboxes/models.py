"""The ``mailboxes`` table. ``password_hash`` is an argon2id PHC string: no plain-text password is stored.

``state`` records a write that spans the database and the mail server BEFORE the mail server is
touched (see :mod:`shipmail.mailboxes.service` and :mod:`shipmail.mailboxes.reconcile`):
``provisioning`` (the row is committed, the account is being made) -> ``active``; ``active`` ->
``deleting`` (committed, the account is being removed) -> the row is deleted. Only ``active``
mailboxes are usable; a row left in another state by a crash is completed or rolled back by the
reconciliation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlmodel import Field, SQLModel

from shipmail.config import Settings
from shipmail.db.types import PydanticJSON, timestamp_field
from shipmail.rules.schemas import RULES, MailboxRule
from shipmail.settings.schemas import AUTO_REPLY, THRESHOLD_DEFAULT, AutoReply
from shipmail.utc import as_utc

#: ``mailboxes.forward_to``: the ACTIVE forwarding destinations (lower-cased addresses), kept in
#: step with :mod:`shipmail.forwarding` and compiled into the delivery script.
FORWARD_TO = TypeAdapter(list[str])


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
    #: JSON list of the active forwarding destinations (:data:`FORWARD_TO`); NULL: none.
    forward_to: list[str] = Field(
        default_factory=list, sa_column=sa.Column("forward_to", PydanticJSON(FORWARD_TO, list), nullable=True)
    )
    #: :class:`MailboxState`: ``provisioning`` / ``deleting`` while a create / delete is under way.
    state: str = Field(
        default=MailboxState.ACTIVE.value,
        max_length=16,
        index=True,
        sa_column_kwargs={"server_default": MailboxState.ACTIVE.value},
    )
    suspended_at: datetime | None = timestamp_field(nullable=True)
    #: Sending limits of this mailbox (None: the service's defaults, ``SHIPMAIL_DAILY_SEND_LIMIT``
    #: and ``SHIPMAIL_MONTHLY_SEND_LIMIT``) and its counters: messages sent in the UTC day
    #: ``send_day`` (``YYYY-MM-DD``) and the UTC month ``send_month`` (``YYYY-MM``); a counter
    #: of an earlier day or month counts as 0 (see :mod:`shipmail.mailboxes.sending`).
    daily_send_limit: int | None = Field(default=None)
    monthly_send_limit: int | None = Field(default=None)
    daily_send_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    send_day: str | None = Field(default=None, max_length=10)
    monthly_send_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    send_month: str | None = Field(default=None, max_length=7)
    #: Messages the inbound gateway delivered in the calendar month ``received_month`` (UTC,
    #: ``YYYY-MM``): ``received_this_month`` of the Mailbox object (0 once the month is over).
    received_month: str | None = Field(default=None, max_length=7)
    received_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    #: When a scheduled deletion purges the mailbox (``DELETE ...?grace_days=N``); null: none.
    #: Until then logins are refused and inbound mail answered 550, the mail kept; a restore
    #: clears it (:mod:`shipmail.mailboxes.lifecycle`).
    deletion_scheduled_at: datetime | None = timestamp_field(nullable=True)
    #: The mail server's storage limit for the account, in bytes; null: no limit.
    storage_quota_bytes: int | None = Field(default=None, sa_type=sa.BigInteger)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


@dataclass(frozen=True)
class Usage:
    """A mailbox's counters as of a moment, its limits and when each window resets."""

    daily_count: int
    daily_limit: int
    daily_reset: datetime
    monthly_count: int
    monthly_limit: int
    monthly_reset: datetime


def day_of(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def month_of(moment: datetime) -> str:
    return f"{moment.year:04d}-{moment.month:02d}"


def usage(row: Mailbox, settings: Settings, now: datetime) -> Usage:
    """The counters of ``row`` at ``now`` (0 for an earlier day or month) and its limits."""
    now = as_utc(now)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month_start = day_start.replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    return Usage(
        daily_count=row.daily_send_count if row.send_day == day_of(now) else 0,
        daily_limit=settings.daily_send_limit if row.daily_send_limit is None else row.daily_send_limit,
        daily_reset=day_start + timedelta(days=1),
        monthly_count=row.monthly_send_count if row.send_month == month_of(now) else 0,
        monthly_limit=settings.monthly_send_limit if row.monthly_send_limit is None else row.monthly_send_limit,
        monthly_reset=next_month,
    )
