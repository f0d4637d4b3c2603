"""The tables. Timestamps are timezone-aware UTC; ids are prefixed strings (:mod:`shipmail.ids`).

Secrets: ``api_keys.digest`` is HMAC-SHA256(secret key, full key) in hex; ``mailboxes.password_hash``
is an argon2id PHC string. No plain-text key or password is stored anywhere.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """The current time, UTC, microsecond precision."""
    return datetime.now(timezone.utc)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A DateTime that always comes back timezone-aware UTC (SQLite stores naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def _ts(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, **kw))


class Organization(SQLModel, table=True):
    """A tenant: owns API keys, domains and mailboxes."""

    __tablename__ = "organizations"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200, unique=True, index=True)
    created_at: datetime = _ts()


class ApiKey(SQLModel, table=True):
    """An API key: shown once at creation, kept only as a digest and a display prefix."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=64)
    name: str | None = Field(default=None, max_length=200)
    prefix: str = Field(max_length=32)
    digest: str = Field(max_length=64, unique=True, index=True)
    scopes: str = Field(max_length=2000)  # space-separated, RFC 6749 section 3.3 style
    created_at: datetime = _ts()
    expires_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)


class Domain(SQLModel, table=True):
    """A mail domain of one organisation; mailboxes need it ``verified``."""

    __tablename__ = "domains"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=64)
    name: str = Field(max_length=253, unique=True, index=True)
    status: str = Field(default="pending", max_length=16)
    verified_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


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
    suspended_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
