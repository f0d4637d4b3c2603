"""Column types shared by the tables (each feature's ``models`` module holds its own table).

Timestamps are timezone-aware UTC; ids are prefixed strings (:mod:`shipmail.ids`). No plain-text
key or password is stored in any table.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from shipmail.utc import as_utc




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
        return as_utc(value)


def timestamp_field(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, **kw))
