"""Engines and sessions for the configured database URL.

``SHIPMAIL_DATABASE_URL`` is given in its synchronous SQLAlchemy form; the API uses the async
variant of the same database, migrations and the login checker (authd) the sync one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

T = TypeVar("T")


def sync_url(url: str) -> str:
    """The synchronous driver URL (``sqlite://``, ``postgresql+psycopg://``)."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"):
        return str(u.set(drivername="sqlite"))
    if u.drivername.startswith("postgresql"):
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


def async_url(url: str) -> str:
    """The async driver URL (``sqlite+aiosqlite://``, ``postgresql+psycopg://``)."""
    u = make_url(sync_url(url))
    if u.drivername == "sqlite":
        return str(u.set(drivername="sqlite+aiosqlite"))
    return u.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def create_sync_engine(url: str) -> Engine:
    """A pooled synchronous engine (migrations, CLI, authd)."""
    engine = sa.create_engine(sync_url(url), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def create_async_db_engine(url: str) -> AsyncEngine:
    """A pooled async engine for the API."""
    is_sqlite = make_url(url).drivername.startswith("sqlite")
    # A local SQLite file needs no liveness ping per checkout; a network database does.
    engine = create_async_engine(async_url(url), pool_pre_ping=not is_sqlite)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """The API's database handle: ``async with db.session() as s: ...`` (one session per request,
    opened by the route: :class:`shipmail.http.routing.Context`). The API key lookup does not use
    it: it runs inside authlib's worker thread on a synchronous engine of its own
    (:func:`shipmail.app.create_app`), one thread hop instead of aiosqlite's several."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_async_db_engine(url)
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; the caller commits. Rolled back if the block raises."""
        async with self._sessions() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise

    async def ping(self) -> bool:
        """Whether the database answers ``SELECT 1``; never raises."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()
