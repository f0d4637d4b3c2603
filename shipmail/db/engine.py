"""Engines, sessions and write transactions for the configured database URL.

``SHIPMAIL_DATABASE_URL`` is given in its synchronous SQLAlchemy form; the API uses the async
variant of the same database, migrations, the CLI, the API key lookup and the login checker
(authd) the sync one. Every engine made here, sync or async, sets up each new SQLite connection
the same way (:func:`_sqlite_pragmas`): foreign keys on, a busy timeout of
:data:`SQLITE_BUSY_TIMEOUT_MS` (a writer waits for another's lock instead of failing at once), WAL
journal (readers never wait for the writer). The SQLite file and its ``-wal``/``-shm`` files are
private to the service's user (0600, :func:`secure_sqlite_files`).

Writes that read a row and change it (settings, suspension, deletes) run in a write transaction
begun BEFORE the read (:func:`begin_write`), so they are serialised on every backend and across
processes. A lock that cannot be had in time answers 503 with ``Retry-After``
(:meth:`Database.session`), never 500.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail.http.errors import ServiceUnavailable

R = TypeVar("R")

logger = logging.getLogger("shipmail.db.engine")

#: Milliseconds a SQLite connection waits for another connection's write lock (in this process or
#: another worker) before the statement fails with "database is locked" (then 503, Retry-After).
#: The longest a request holds the lock is a script change: up to three JMAP requests of at most
#: ``SHIPMAIL_JMAP_TIMEOUT`` (2 s by default) each, so a few queued changes of one mailbox must fit.
SQLITE_BUSY_TIMEOUT_MS = 15000
#: ``Retry-After`` (seconds) of the 503 answered when the database lock could not be had in time.
LOCK_RETRY_AFTER = 1
#: Files SQLite keeps next to the database file (WAL, its shared-memory index, rollback journal).
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
#: PostgreSQL SQLSTATEs meaning "could not get the lock now": lock_not_available, deadlock_detected,
#: serialization_failure. A retry of the whole request can succeed.
_PG_LOCK_STATES = frozenset({"55P03", "40P01", "40001"})


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
    """Set up a new SQLite connection (sqlite3 or aiosqlite): foreign keys, the busy timeout (set
    first: switching the journal mode may itself wait for a lock), WAL."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite ``url``; None for another database, ``:memory:`` or a
    ``file:`` URI."""
    u = make_url(url)
    if not u.drivername.startswith("sqlite") or not u.database or u.database == ":memory:":
        return None
    if u.database.startswith("file:") or str(u.query.get("uri", "")).lower() == "true":
        return None
    return Path(u.database)


def secure_sqlite_files(url: str) -> None:
    """Make a SQLite database private to this user: create its file with mode 0600 if it does not
    exist yet (its directory must), and set 0600 on it and on its ``-wal``, ``-shm`` and
    ``-journal`` files where they are looser (files left by an older version). SQLite creates the
    ``-wal`` and ``-shm`` files later with the main file's mode, so they are 0600 too. A file this
    user may not change is logged and left as it is. Nothing to do for other databases."""
    path = sqlite_path(url)
    if path is None or not path.parent.is_dir():
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        logger.warning("could not create %s: %s", path, exc)
        return
    for file in [path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)]:
        try:
            if file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("could not make %s private (mode 0600): %s", file, exc)


def create_sync_engine(url: str) -> Engine:
    """A pooled synchronous engine (migrations, CLI, the login checker). A network database's
    connections are pinged on checkout; a local SQLite file's need no ping."""
    is_sqlite = make_url(sync_url(url)).drivername == "sqlite"
    engine = sa.create_engine(sync_url(url), pool_pre_ping=not is_sqlite)
    if engine.dialect.name == "sqlite":
        secure_sqlite_files(url)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


#: Milliseconds a point read on the event loop (:class:`PointReader`) waits for a SQLite lock. A WAL
#: reader never waits for a writer; it can only meet a lock while another connection recovers or
#: closes the WAL: then :func:`shipmail.db.repository.get_owned` reads through the session instead
#: (which waits off the event loop), so the loop is held at most this long.
POINT_READ_BUSY_TIMEOUT_MS = 200


def _sqlite_reader_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Set up a point-read SQLite connection: read-only, short busy timeout (the file is already
    in WAL mode: :func:`_sqlite_pragmas` of the writers set it)."""
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={int(POINT_READ_BUSY_TIMEOUT_MS)}")
    cur.execute("PRAGMA query_only=ON")
    cur.close()


_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Prepared:
    """A Core ``SELECT`` compiled for a DBAPI connection: its SQL, its parameters in order with
    their bind processors, and the result processor of each selected column."""

    sql: str
    names: tuple[str, ...]
    defaults: tuple[Any, ...]
    binds: tuple[_Processor, ...]
    results: tuple[_Processor, ...]
    #: ``(index, processor)`` of each selected column whose values are converted.
    converted: tuple[tuple[int, Callable[[Any], Any]], ...] = ()

    @classmethod
    def of(cls, statement: sa.Select[Any], dialect: sa.Dialect) -> _Prepared:
        compiled = statement.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        binds = [compiled.binds[name] for name in names]
        results = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in statement.selected_columns
        )
        return cls(
            sql=compiled.string,
            names=names,
            defaults=tuple(b.effective_value for b in binds),
            binds=tuple(b.type.dialect_impl(dialect).bind_processor(dialect) for b in binds),
            results=results,
            converted=tuple((i, p) for i, p in enumerate(results) if p is not None),
        )

    def _values(self, params: dict[str, Any]) -> list[Any]:
        values = []
        for name, default, bind in zip(self.names, self.defaults, self.binds, strict=True):
            value = params.get(name, default)
            values.append(bind(value) if bind is not None else value)
        return values

    def _row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        if not self.converted:
            return tuple(row)
        values = list(row)
        for index, convert in self.converted:
            values[index] = convert(values[index])
        return tuple(values)

    def run(self, dbapi_conn: Any, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row (values processed), or None; the cursor is closed (no read snapshot kept)."""
        cursor = dbapi_conn.execute(self.sql, self._values(params))
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return None if row is None else self._row(row)

    def run_all(self, dbapi_conn: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row (values processed); the cursor is closed."""
        cursor = dbapi_conn.execute(self.sql, self._values(params))
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return [self._row(row) for row in rows]


class PointReader:
    """Reads of at most one row by key, with no thread hop: the cheapest way to the database for
    the reads every request makes (the API key on a cache miss, the mailbox row of the path).

    - SQLite file: the query runs synchronously on the event loop, on a read-only connection of
      a pool of its own (:data:`POINT_READ_BUSY_TIMEOUT_MS`). A primary-key read of a local
      file takes ~10 us, less than one round trip to aiosqlite's thread (~100 us of CPU each,
      and an ORM read through aiosqlite makes five); in WAL mode a reader never waits for a
      writer, so the loop is not held by other transactions.
    - Another database: the async engine's connection (PostgreSQL through psycopg's async API,
      no thread either).

    Rows come from a Core ``SELECT`` (no ORM session), built once by the caller. On SQLite it is
    compiled once (:class:`_Prepared`) and run on the raw ``sqlite3`` connection, its values
    converted by the columns' own result processors: exactly what SQLAlchemy's execution does,
    less its per-call bookkeeping (~50 us of ~60 us, measured).
    """

    def __init__(self, url: str, engine: AsyncEngine) -> None:
        self._async = engine
        self._sync: Engine | None = None
        #: Open connections not in use (SQLite): taken and given back around each read, so a read
        #: pays no pool checkout; each is used by one thread at a time.
        self._idle: list[sa.Connection] = []
        self._prepared: dict[sa.Select[Any], _Prepared] = {}
        if sqlite_path(url) is not None:
            self._sync = sa.create_engine(sync_url(url), pool_pre_ping=False, connect_args={"check_same_thread": False})
            sa.event.listen(self._sync, "connect", _sqlite_reader_pragmas)

    async def one(self, statement: sa.Select[Any], params: dict[str, Any]) -> Sequence[Any] | None:
        """The first row of ``statement`` with ``params`` (its values as the columns' types give
        them), or None."""
        if self._sync is None:
            async with self._async.connect() as aconn:
                found: sa.Row[Any] | None = (await aconn.execute(statement, params)).first()
                return found
        return self._run(statement, params, _Prepared.run)

    async def all(self, statement: sa.Select[Any], params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        """Every row of ``statement`` with ``params`` (a read of a few small rows by an indexed
        key, such as a mailbox's aliases: on SQLite it runs on the event loop too)."""
        if self._sync is None:
            async with self._async.connect() as aconn:
                return list((await aconn.execute(statement, params)).all())
        return self._run(statement, params, _Prepared.run_all)

    def _run(
        self, statement: sa.Select[Any], params: dict[str, Any], run: Callable[[_Prepared, Any, dict[str, Any]], R]
    ) -> R:
        assert self._sync is not None
        prepared = self._prepared.get(statement)
        if prepared is None:
            prepared = self._prepared[statement] = _Prepared.of(statement, self._sync.dialect)
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._sync.connect()
        try:
            result = run(prepared, conn.connection.driver_connection, params)
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        self._idle.append(conn)
        return result

    def dispose(self) -> None:
        while self._idle:
            self._idle.pop().close()
        if self._sync is not None:
            self._sync.dispose()


def create_async_db_engine(url: str) -> AsyncEngine:
    """A pooled async engine for the API."""
    is_sqlite = make_url(url).drivername.startswith("sqlite")
    # A local SQLite file needs no liveness ping per checkout; a network database does.
    engine = create_async_engine(async_url(url), pool_pre_ping=not is_sqlite)
    if engine.dialect.name == "sqlite":
        secure_sqlite_files(url)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


async def begin_write(session: AsyncSession) -> None:
    """Begin ``session``'s write transaction now, before it reads what it is going to change, so
    that read-then-write changes of the same data are serialised, across processes too.

    - SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock at once (waiting up to
      :data:`SQLITE_BUSY_TIMEOUT_MS` for another writer, in any process). Every read after it
      sees the last committed state and nobody else writes until this transaction ends. Without
      it, the sqlite3 driver begins a transaction only at the first INSERT/UPDATE/DELETE: rows
      read before that may be stale by the time they are written back.
    - PostgreSQL: the session's transaction starts (if it had not); the rows to change are then
      locked with ``SELECT ... FOR UPDATE``
      (:func:`shipmail.db.repository.get_owned` with ``for_update=True``, which calls this).

    Idempotent: a session already holding the write lock keeps its transaction (on SQLite a
    transaction the driver opened for an INSERT/UPDATE/DELETE holds it already). Reads done in
    the session before this call were outside the transaction: read the row again afterwards
    (``for_update=True`` refreshes it). The lock is released by the session's commit or
    rollback. Errors: "database is locked" after the busy timeout (503 through
    :meth:`Database.session`).
    """
    conn = await session.connection()
    if conn.dialect.name != "sqlite":
        return
    raw = await conn.get_raw_connection()
    if raw.driver_connection is not None and raw.driver_connection.in_transaction:
        return
    await conn.exec_driver_sql("BEGIN IMMEDIATE")


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` means the database could not give a lock or a connection in time: SQLite
    ``SQLITE_BUSY``/``SQLITE_LOCKED`` ("database is locked"), PostgreSQL lock_not_available,
    deadlock_detected or serialization_failure, or the connection pool's checkout timeout. The
    same request can succeed when retried."""
    if isinstance(exc, sa.exc.TimeoutError):
        return True
    orig: Any
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig
    elif isinstance(exc, sqlite3.Error):  # raised as it is by PointReader's reads
        orig = exc
    else:
        return False
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in str(orig)
    return getattr(orig, "sqlstate", None) in _PG_LOCK_STATES


#: ``session.info`` entry holding the :class:`PointReader` of the session's database (sessions of
#: :meth:`Database.session`; :func:`shipmail.db.repository.get_owned` uses it).
READER = "shipmail.point_reader"


#: ``session.info`` flag set once a session of :meth:`Database.session` has begun a transaction on
#: a connection (SQLAlchemy's ``after_begin`` session event); such a session is closed through
#: the async path.
CONNECTED = "shipmail.connected"


class _RequestSession(Session):
    """The synchronous session (sqlmodel's) under each :class:`AsyncSession` of :class:`Database`
    (a class of its own, so that its ``after_begin`` listener concerns these sessions only)."""


@sa.event.listens_for(_RequestSession, "after_begin")
def _connected(session: Session, _transaction: Any, _connection: Any) -> None:
    session.info[CONNECTED] = True


class Database:
    """The API's database handle: ``async with db.session() as s: ...`` (one session per request,
    opened by the route: :class:`shipmail.http.routing.Context`), and :attr:`reader`, the
    :class:`PointReader` of the API key lookup and of tenant lookups of one row in a session that
    has not touched the database yet (:func:`shipmail.db.repository.get_owned`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_async_db_engine(url)
        self.reader = PointReader(url, self.engine)
        self._sessions = async_sessionmaker(
            self.engine,
            class_=AsyncSession,
            sync_session_class=_RequestSession,
            expire_on_commit=False,
            info={READER: self.reader},
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session; the caller commits. Rolled back if the block raises; a lock or connection
        that could not be had in time (:func:`is_lock_timeout`) is raised as 503
        :class:`~shipmail.http.errors.ServiceUnavailable` with ``Retry-After``.

        Closed at the end of the block. A session that never took a connection (a read-only
        request whose rows came from :attr:`reader`: nothing to roll back, nothing to give back
        to the pool; :data:`CONNECTED` is set by SQLAlchemy's ``after_begin`` event) is closed
        synchronously, as SQLAlchemy's own close does it then, without I/O; only a session that
        took one is closed through the async path (``AsyncSession.close`` under
        ``asyncio.shield``: a task and a greenlet switch, ~40 us against ~12 us a request,
        measured on this machine)."""
        session = self._sessions()
        try:
            yield session
        except BaseException as exc:
            await session.rollback()
            if is_lock_timeout(exc):
                reason = getattr(exc, "orig", None) or type(exc).__name__
                logger.warning("database lock not available in time: %s", reason)
                raise ServiceUnavailable(
                    "The database is busy with other changes; retry shortly.", retry_after=LOCK_RETRY_AFTER
                ) from None
            raise
        finally:
            if session.info.get(CONNECTED):
                await asyncio.shield(session.close())
            else:
                session.sync_session.close()  # no connection: expunges the objects, no I/O

    async def ping(self) -> bool:
        """Whether the database answers ``SELECT 1``; never raises."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        self.reader.dispose()
        await self.engine.dispose()
