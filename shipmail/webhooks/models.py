"""The ``webhooks``, ``webhook_deliveries`` and ``webhook_attempts`` tables.

Secrets are stored encrypted (AES-256-GCM under a key derived from ``SHIPMAIL_SECRET_KEY``,
:mod:`shipmail.webhooks.secrets`): the service must sign with them, so it cannot keep a hash only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class Webhook(SQLModel, table=True):
    """One endpoint of an organisation and the event types it receives."""

    __tablename__ = "webhooks"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(index=True, max_length=64)
    url: str = Field(max_length=2048)
    events: list[str] = Field(default_factory=list, sa_column=sa.Column("events", sa.JSON(), nullable=False))
    active: bool = True
    description: str | None = Field(default=None, max_length=500)
    secret: str = Field(max_length=400)  # encrypted
    previous_secret: str | None = Field(default=None, max_length=400)  # encrypted; valid until ...
    previous_secret_expires_at: datetime | None = timestamp_field(nullable=True)
    #: Since when every attempt failed (None while the last one succeeded); 3 days -> disabled.
    failing_since: datetime | None = timestamp_field(nullable=True)
    disabled_at: datetime | None = timestamp_field(nullable=True)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()


class WebhookDelivery(SQLModel, table=True):
    """One event sent (or to be sent) to one webhook; ``message_id`` is the ``webhook-id`` header,
    the same for every attempt and every replay of it."""

    __tablename__ = "webhook_deliveries"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(index=True, max_length=64)
    webhook_id: str = Field(index=True, max_length=64)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=64)
    mailbox_id: str | None = Field(default=None, max_length=64)
    message_id: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column("payload", sa.JSON(), nullable=False))
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = Field(default=None, max_length=1000)
    next_attempt_at: datetime | None = timestamp_field(nullable=True)
    delivered_at: datetime | None = timestamp_field(nullable=True)
    replayed_from_delivery_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = timestamp_field()


class WebhookAttempt(SQLModel, table=True):
    """One HTTP attempt of a delivery: when, the status (None: no answer), how long, what came back."""

    __tablename__ = "webhook_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(index=True, max_length=64)
    attempted_at: datetime = timestamp_field()
    status_code: int | None = None
    duration_ms: int = 0
    response_body: str | None = Field(default=None, max_length=1100)  # the first 1 KiB
    error: str | None = Field(default=None, max_length=1000)
