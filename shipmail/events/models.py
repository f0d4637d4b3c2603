"""The ``events`` table: one row per event, in the order of ``seq``.

``seq`` is the database's auto-increment key, so a later commit never has a smaller ``seq`` than
an earlier one as long as writers take the event lock (:func:`shipmail.events.service.record`:
SQLite has one writer at a time anyway; PostgreSQL takes a transaction-scoped advisory lock), and
a reader that has seen ``seq = n`` has seen every event before it: cursors and ``Last-Event-ID``
are positions in ``seq``. ``key`` makes an event idempotent per (mailbox, type): the JMAP id of the
received message for ``message.received``, so a retried delivery never records it twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class Event(SQLModel, table=True):
    """One event: ``id`` (``evt_...``), ``type`` (``message.received``, ...), ``data`` (JSON, the
    event's payload as the API shows it)."""

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_mailbox_seq", "mailbox_id", "seq"),
        sa.Index("ux_events_mailbox_type_key", "mailbox_id", "type", "key", unique=True),
        {"sqlite_autoincrement": True},
    )

    seq: int | None = Field(default=None, primary_key=True)
    id: str = Field(max_length=64, unique=True, index=True)
    organization_id: str = Field(max_length=64, index=True)
    mailbox_id: str | None = Field(default=None, max_length=64)
    type: str = Field(max_length=64)
    key: str | None = Field(default=None, max_length=200)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column("data", sa.JSON(), nullable=False))
    created_at: datetime = timestamp_field(index=True)
