"""Queries shared by the services: tenant-scoped lookups and keyset pages.

Every lookup of a tenant's object filters on ``organization_id``: another organisation's id reads
exactly like an id that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Mapper, defer, make_transient_to_detached
from sqlalchemy.sql.base import ExecutableOption
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.db.engine import CONNECTED, READER, PointReader, begin_write, is_lock_timeout
from shipmail.db.types import UTCDateTime

T = TypeVar("T", bound=SQLModel)


async def point_rows(
    session: AsyncSession, statement: sa.Select[Any], params: dict[str, Any]
) -> Sequence[Sequence[Any]] | None:
    """Every row of the Core ``statement`` with ``params`` through the database's
    :class:`~shipmail.db.engine.PointReader` (no thread hop: a few small rows by an indexed key),
    when ``session`` (of :meth:`shipmail.db.engine.Database.session`) has not touched the database
    yet (no transaction, nothing pending: it would read what that reader reads); None when the
    caller must read through the session (or a WAL lock was met, see :func:`get_owned`)."""
    reader = session.info.get(READER)
    if not isinstance(reader, PointReader) or not _untouched(session):
        return None
    try:
        return await reader.all(statement, params)
    except Exception as exc:
        if not is_lock_timeout(exc):
            raise
        return None


def _untouched(session: AsyncSession) -> bool:
    """Whether ``session`` has not touched the database: it never took a connection (SQLAlchemy
    autobegins a transaction without one when a point read attaches its row, so
    ``in_transaction()`` is no test: :data:`~shipmail.db.engine.CONNECTED` is) and holds no
    pending change. Such a session would read exactly what the :class:`PointReader` reads."""
    return not session.info.get(CONNECTED) and not (session.new or session.dirty or session.deleted)


async def get_owned(
    session: AsyncSession,
    model: type[T],
    organization_id: str,
    object_id: str,
    *,
    for_update: bool = False,
    options: Sequence[ExecutableOption] = (),
    without: Sequence[str] = (),
) -> T | None:
    """The ``model`` row ``object_id`` if it belongs to ``organization_id``, else None.

    ``for_update``: read it for a change, inside the write transaction (begun here if it was not:
    :func:`shipmail.db.engine.begin_write`) and locked until that transaction ends (SQLite: the
    database's write lock; PostgreSQL: ``SELECT ... FOR UPDATE``), so concurrent changes of the
    row are serialised; the object is refreshed from that read even if the session had loaded it
    before. ``options``: loader options of the query (``defer`` a column, ...). ``without``:
    attributes not read (a large column the caller does not use): touching one on the object
    raises instead of loading it.

    A plain read (no ``for_update``, no ``options``) in a session of
    :meth:`shipmail.db.engine.Database.session` that has not touched the database yet (no
    transaction, nothing pending) skips the ORM query: one Core ``SELECT`` through the database's
    :class:`~shipmail.db.engine.PointReader` (no thread hop), the object built as the ORM's
    loader builds it and attached to the session as persistent, exactly as if the session had
    loaded it (changes to it are flushed by the session's commit)."""
    reader = session.info.get(READER)
    if isinstance(reader, PointReader) and not for_update and not options and _untouched(session):
        try:
            return await _point_read(session, reader, model, organization_id, object_id, tuple(without))
        except Exception as exc:
            if not is_lock_timeout(exc):
                raise
            # A WAL reader meets a lock only in rare moments (another connection recovering or
            # closing the WAL): read through the session, which waits for it off the event loop.
    stmt = select(model).where(
        col(model.id) == object_id,  # type: ignore[attr-defined]
        col(model.organization_id) == organization_id,  # type: ignore[attr-defined]
    )
    if options:
        stmt = stmt.options(*options)
    if without:
        stmt = stmt.options(*(defer(getattr(model, name), raiseload=True) for name in without))
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


@cache
def _point_statement(model: type[SQLModel], without: tuple[str, ...]) -> tuple[sa.Select[Any], tuple[str, ...]]:
    """``SELECT <columns but without> FROM <model> WHERE id = :id AND organization_id = :org``,
    and the attribute name of each selected column (built once per model)."""
    mapper: Mapper[Any] = sa.inspect(model)
    columns = [c for c in mapper.columns if mapper.get_property_by_column(c).key not in without]
    table = mapper.local_table
    stmt = sa.select(*columns).where(table.c.id == sa.bindparam("id"), table.c.organization_id == sa.bindparam("org"))
    return stmt, tuple(mapper.get_property_by_column(c).key for c in columns)


async def _point_read(
    session: AsyncSession,
    reader: PointReader,
    model: type[T],
    organization_id: str,
    object_id: str,
    without: tuple[str, ...],
) -> T | None:
    stmt, keys = _point_statement(model, without)
    row = await reader.one(stmt, {"id": object_id, "org": organization_id})
    if row is None:
        return None
    mapper: Mapper[Any] = sa.inspect(model)
    identity = mapper.identity_key_from_primary_key((row[keys.index("id")],))
    existing = session.sync_session.identity_map.get(identity)
    if existing is not None:  # a session holding it already (not after a fresh start): its copy
        return existing  # type: ignore[no-any-return]
    obj = mapper.class_manager.new_instance()  # as the ORM's loader: no __init__, no validation
    obj.__dict__.update(zip(keys, row, strict=True))
    make_transient_to_detached(obj)  # identity key set; attributes not read are expired
    session.add(obj)  # persistent in the session
    return obj  # type: ignore[no-any-return]
