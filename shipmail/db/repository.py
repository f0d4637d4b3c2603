"""Queries shared by the services: tenant-scoped lookups and keyset pages.

Every lookup of a tenant's object filters on ``organization_id``: another organisation's id reads
exactly like an id that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql.base import ExecutableOption
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.db.engine import begin_write
from shipmail.db.types import UTCDateTime

T = TypeVar("T", bound=SQLModel)


async def get_owned(
    session: AsyncSession,
    model: type[T],
    organization_id: str,
    object_id: str,
    *,
    for_update: bool = False,
    options: Sequence[ExecutableOption] = (),
) -> T | None:
    """The ``model`` row ``object_id`` if it belongs to ``organization_id``, else None.

    ``for_update``: read it for a change, inside the write transaction (begun here if it was not:
    :func:`shipmail.db.engine.begin_write`) and locked until that transaction ends (SQLite: the
    database's write lock; PostgreSQL: ``SELECT ... FOR UPDATE``), so concurrent changes of the
    row are serialised; the object is refreshed from that read even if the session had loaded it
    before. ``options``: loader options of the query (``defer`` a column, ...)."""
    stmt = select(model).where(
        col(model.id) == object_id,  # type: ignore[attr-defined]
        col(model.organization_id) == organization_id,  # type: ignore[attr-defined]
    )
    if options:
        stmt = stmt.options(*options)
    if for_update:
        await begin_write(session)
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return (await session.exec(stmt)).first()


async def page(
    session: AsyncSession,
    model: type[T],
    *,
    where: Sequence[Any],
    after: tuple[datetime, str] | None,
    limit: int,
) -> tuple[list[T], bool]:
    """Rows in ``(created_at, id)`` order after the keyset position ``after``; (rows, has_more)."""
    created = col(model.created_at)  # type: ignore[attr-defined]
    ident = col(model.id)  # type: ignore[attr-defined]
    stmt = select(model).where(*where)
    if after is not None:
        stmt = stmt.where(sa.tuple_(created, ident) > sa.tuple_(sa.literal(after[0], UTCDateTime()), after[1]))
    stmt = stmt.order_by(created, ident).limit(limit + 1)
    rows = list((await session.exec(stmt)).all())
    return rows[:limit], len(rows) > limit
