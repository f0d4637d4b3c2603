"""Tenants and their API keys. ``api_keys.digest`` is HMAC-SHA256(secret key, full key) in hex:
no plain-text key is stored."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class Organization(SQLModel, table=True):
    """A tenant: owns API keys, domains and mailboxes."""

    __tablename__ = "organizations"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200, unique=True, index=True)
    created_at: datetime = timestamp_field()


class ApiKey(SQLModel, table=True):
    """An API key: shown once at creation, kept only as a digest and a display prefix."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    prefix: str = Field(max_length=32)
    digest: str = Field(max_length=64, unique=True, index=True)
    scopes: str = Field(max_length=2000)  # space-separated, RFC 6749 section 3.3 style
    created_at: datetime = timestamp_field()
    expires_at: datetime | None = timestamp_field(nullable=True)
    revoked_at: datetime | None = timestamp_field(nullable=True)
    #: Space-separated ids of the only mailboxes the key may see (``shipmail keys create
    #: --mailbox``); NULL: every mailbox of the organisation.
    mailbox_ids: str | None = Field(default=None, sa_column=sa.Column("mailbox_ids", sa.Text(), nullable=True))
