"""Column types shared by the tables (each feature's ``models`` module holds its own table).

Timestamps are timezone-aware UTC; ids are prefixed strings (:mod:`shipmail.ids`); structured
settings are JSON text holding a pydantic type (:class:`PydanticJSON`). No plain-text key or
password is stored in any table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import pydantic
import sqlalchemy as sa
from sqlmodel import Field

from shipmail.utc import as_utc

logger = logging.getLogger("shipmail.db.types")

T = TypeVar("T")

#: The pydantic validation and serialisation context of values read from or written to a
#: :class:`PydanticJSON` column: a model may keep fields there that its wire form never shows
#: (check with :func:`is_storage`).
STORAGE_CONTEXT: Mapping[str, bool] = {"storage": True}


def is_storage(context: Any) -> bool:
    """Whether a pydantic ``context`` is :data:`STORAGE_CONTEXT` (a database read or write)."""
    return isinstance(context, Mapping) and context.get("storage") is True


class PydanticJSON(sa.types.TypeDecorator[T], Generic[T]):
    """A TEXT column holding a value of a pydantic type as JSON: written with ``adapter``'s
    ``dump_json`` and read (validated) with its ``validate_json``, both in
    :data:`STORAGE_CONTEXT`. NULL and the empty string read as ``empty()``.

    A stored value that does not validate raises ``pydantic.ValidationError`` on read, unless
    ``lenient``: then it is logged and read as ``empty()``. Assign a new value to change the
    column: a value changed in place is not seen (no mutation tracking).
    """

    impl = sa.Text()
    cache_ok = True

    def __init__(self, adapter: pydantic.TypeAdapter[T], empty: Callable[[], T], *, lenient: bool = False) -> None:
        super().__init__()
        self.adapter = adapter
        self.empty = empty
        self.lenient = lenient

    def process_bind_param(self, value: T | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return self.adapter.dump_json(value, context=STORAGE_CONTEXT).decode()

    def compare_values(self, x: Any, y: Any) -> bool:
        """Values are replaced, never changed in place: an assigned value is a change (and deep
        equality of large model trees at every flush is not paid for)."""
        return x is y

    def process_result_value(self, value: str | None, dialect: Any) -> T:
        if not value:
            return self.empty()
        try:
            return self.adapter.validate_json(value, context=STORAGE_CONTEXT)
        except pydantic.ValidationError as exc:
            if not self.lenient:
                raise
            logger.error("unreadable stored %s (%d errors); reading it as the default", self.adapter, exc.error_count())
            return self.empty()


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A DateTime that always comes back timezone-aware UTC (SQLite stores naive values)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


def timestamp_field(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, **kw))
