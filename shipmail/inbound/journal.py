"""The inbound gateway's own durable journal of accepted deliveries: what it commits before it
answers ``250``, moved into the service's job queue right after, off the delivery's path.

Why a journal of its own: the record of a delivery must be durable before the ``250`` (an event is
never lost), but the service's database is shared. On SQLite its one write lock is held by the
API's requests and by the job worker (which records the events of the previous deliveries at that
very moment), and every write through the async ORM costs several hops to aiosqlite's thread; the
gateway's ``250`` waited for both (measured: 2-5 ms p50 of the record alone, more under load).
The journal is a SQLite file in the data directory (:func:`journal_path`) that only the gateway
process writes: appending a batch is one ``INSERT`` and one commit on a thread of its own, never
waiting for anyone else's lock.

Durability: WAL mode with ``synchronous=FULL``, the service database's own setting (SQLite's
default): every commit fsyncs the WAL before it returns, so an appended delivery survives a power
loss, not only a killed process (``NORMAL`` under WAL would survive ``kill -9`` but could lose the
last commits on power loss, which a ``250`` must not). The file is private (0600).

Moving: :class:`Journal` is read by :class:`shipmail.inbound.gateway.Recorder`'s mover, in the
gateway process itself, right after each append (and at start, for what a killed gateway left):
it enqueues the ``inbound.record`` jobs of the oldest entries in one transaction of the service's
database (SQLite or PostgreSQL alike, so gateways on several machines each move their own), then
deletes those entries. A crash between the two enqueues them again on the next pass: at least
once, which the job tolerates (a delivery recorded before records nothing,
:func:`shipmail.inbound.service.record_deliveries`). Entries are moved in append order, so each
mailbox's jobs keep delivery order.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from shipmail.db.engine import SQLITE_BUSY_TIMEOUT_MS, secure_sqlite_files

T = TypeVar("T")

#: The journal's file name in the data directory.
FILE_NAME = "inbound-journal.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    message_id TEXT,
    reply TEXT NOT NULL,
    at TEXT NOT NULL
)
"""


def journal_path(data_dir: Path) -> Path:
    """Where the gateway of the data directory ``data_dir`` keeps its journal."""
    return data_dir / FILE_NAME


@dataclass(frozen=True)
class Entry:
    """One accepted delivery: the mailbox, the gateway's delivery id, the Message-ID (without
    angle brackets) or None, the mail server's reply line, when it was accepted (ISO 8601 UTC);
    ``seq`` is its place in the journal (0 before it is appended)."""

    mailbox_id: str
    delivery_id: str
    message_id: str | None
    reply: str
    at: str
    seq: int = 0


class Journal:
    """The journal file at ``path`` (created on first use), used from one event loop. Every
    operation runs on one thread of its own with one connection, so operations never overlap."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inbound-journal")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            secure_sqlite_files(f"sqlite:///{self.path}")
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """``sql`` once per row of ``rows``, in one transaction: all committed, or none."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _append(self, entries: list[Entry]) -> None:
        self._write(
            "INSERT INTO deliveries (mailbox_id, delivery_id, message_id, reply, at) VALUES (?, ?, ?, ?, ?)",
            [(e.mailbox_id, e.delivery_id, e.message_id, e.reply, e.at) for e in entries],
        )

    async def append(self, entries: list[Entry]) -> None:
        """Append ``entries`` in one transaction, committed (fsynced) when this returns; raises
        :class:`sqlite3.Error` (then none was appended)."""
        await self._run(self._append, entries)

    def _oldest(self, limit: int) -> list[Entry]:
        rows = (
            self._connection()
            .execute(
                "SELECT id, mailbox_id, delivery_id, message_id, reply, at FROM deliveries ORDER BY id LIMIT ?",
                (limit,),
            )
            .fetchall()
        )
        return [Entry(seq=r[0], mailbox_id=r[1], delivery_id=r[2], message_id=r[3], reply=r[4], at=r[5]) for r in rows]

    async def oldest(self, limit: int = 500) -> list[Entry]:
        """The ``limit`` oldest entries, in append order."""
        result: list[Entry] = await self._run(self._oldest, limit)
        return result

    def _remove(self, seqs: list[int]) -> None:
        self._write("DELETE FROM deliveries WHERE id = ?", [(s,) for s in seqs])

    async def remove(self, entries: list[Entry]) -> None:
        """Delete ``entries`` (moved into the job queue)."""
        await self._run(self._remove, [e.seq for e in entries])

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        await self._run(self._close)
        self._executor.shutdown(wait=True)
