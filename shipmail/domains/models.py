"""The ``domains`` table."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from shipmail.db.types import timestamp_field


class Domain(SQLModel, table=True):
    """A mail domain of one organisation; mailboxes need it ``verified``."""

    __tablename__ = "domains"

    id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(foreign_key="organizations.id", index=True, max_length=64)
    name: str = Field(max_length=253, unique=True, index=True)
    status: str = Field(default="pending", max_length=16)
    verified_at: datetime | None = timestamp_field(nullable=True)
    created_at: datetime = timestamp_field()
    updated_at: datetime = timestamp_field()
