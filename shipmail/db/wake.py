"""Wake-ups across processes after a commit: "jobs were enqueued", "events were recorded".

The job worker (:mod:`shipmail.jobs`) and the event stream (:mod:`shipmail.events.routes`) wait
for rows other processes commit: the inbound gateway (``serve-gateway``) enqueues and records in
its own process, and ``serve --workers N`` runs N API processes. Rather than reading the database
every fraction of a second, every process that waits binds one Unix datagram socket in a
directory private to the service's user and to the database (:func:`wake_dir`: the same
database URL on this machine gives the same directory), and a writer, once its transaction has
committed, sends the topic's name (``b"jobs"``, ``b"events"``) to every socket there
(:func:`publish`; a few microseconds each, never blocking, never raising). A socket whose
process died is removed by the first sender that finds it dead.

On PostgreSQL the same topic also travels as a ``NOTIFY`` on the channel :data:`CHANNEL`, sent
inside the writer's transaction (PostgreSQL delivers it at commit and drops it on rollback), and
every listener keeps one ``LISTEN`` connection (psycopg), so processes on *other machines* sharing
the database are woken too (PostgreSQL ``NOTIFY``/``LISTEN``). A process of the same machine may
be woken twice (datagram and notification): a wake-up is idempotent.

This is a hint, never the source of truth: a waiter always re-reads the database when woken, and
still reads it at its (long) fallback interval, so a lost wake-up (a full buffer, a dropped
``LISTEN`` connection being re-established, a directory that cannot be made) costs latency, never
an event.

Use::

    listener = await wake.listen(db.url)              # once per event loop; closed by close_all()
    unsubscribe = listener.subscribe("jobs", callback) # callback() runs in that loop
    wake.after_commit(session, "events")                # publish once this transaction commits
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import logging
import os
import secrets
import socket
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlmodel.ext.asyncio.session import AsyncSession

logger = logging.getLogger("shipmail.db.wake")

JOBS = "jobs"
EVENTS = "events"

#: The PostgreSQL ``NOTIFY`` channel of the wake-ups; the payload is the topic's name.
CHANNEL = "shipmail_wake"
#: Seconds between attempts to (re-)establish a lost ``LISTEN`` connection: first, then at most.
_RELISTEN_FIRST, _RELISTEN_MAX = 1.0, 30.0

#: Longest Unix socket path (``sun_path`` is 108 bytes on Linux, with its NUL).
_MAX_PATH = 107


@functools.lru_cache(maxsize=32)
def _identity(url: str) -> str:
    """What makes two URLs the same database: backend, host, port, database (driver ignored).
    Cached: every publish needs it, and parsing the URL was most of a publish's CPU (py-spy)."""
    u = make_url(url)
    return f"{u.get_backend_name()}|{u.host or ''}|{u.port or ''}|{u.database or ''}"


def wake_dir(url: str) -> Path:
    """The directory of the wake sockets of the database ``url``: under ``$XDG_RUNTIME_DIR`` or the
    temporary directory, named after a digest of the database's identity and the user id."""
    digest = hashlib.sha256(f"{os.getuid()}|{_identity(url)}".encode()).hexdigest()[:16]
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"shipmail-wake-{digest}"


def _private_dir(path: Path) -> bool:
    """Make ``path`` (0700) or check that it is ours and private; False when it cannot be used."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        logger.warning("wake-ups disabled: cannot make %s: %s", path, exc)
        return False
    if st.st_uid != os.getuid() or (st.st_mode & 0o077) or not path.is_dir() or path.is_symlink():
        logger.warning("wake-ups disabled: %s is not a private directory of this user", path)
        return False
    return True


_sender: socket.socket | None = None


def publish(url: str, topic: str) -> None:
    """Tell every waiting process of the database ``url`` that ``topic`` has news. Never raises,
    never blocks (a full socket buffer drops the datagram: that waiter already has one pending)."""
    global _sender
    directory = wake_dir(url)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    if _sender is None:
        try:
            _sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sender.setblocking(False)
        except OSError:
            return
    payload = topic.encode()
    for name in names:
        if not name.endswith(".sock"):
            continue
        path = directory / name
        try:
            _sender.sendto(payload, str(path))
        except BlockingIOError:
            continue
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
                with contextlib.suppress(OSError):
                    path.unlink()  # its process is gone
            continue


def after_commit(session: AsyncSession, topic: str) -> None:
    """Publish ``topic`` for ``session``'s database once its current transaction commits."""
    sync = session.sync_session
    key = f"shipmail.wake.{topic}"
    if sync.info.get(key):
        return  # already registered for this transaction
    bind = session.sync_session.get_bind()
    url = bind.engine.url.render_as_string(hide_password=False)
    sync.info[key] = True

    def fire(_session: Any) -> None:
        sync.info.pop(key, None)
        publish(url, topic)

    event.listen(sync, "after_commit", fire, once=True)
    if bind.dialect.name == "postgresql":

        def notify(session: Any) -> None:
            # Inside the transaction: PostgreSQL sends it at commit, and never after a rollback.
            session.execute(text("SELECT pg_notify(:channel, :topic)"), {"channel": CHANNEL, "topic": topic})

        event.listen(sync, "before_commit", notify, once=True)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.listener._deliver(data.decode("ascii", "replace"))


class Listener:
    """One bound wake socket of this process and event loop, for one database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path: Path | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._callbacks: dict[str, list[Callable[[], None]]] = {}
        self._notifications: asyncio.Task[None] | None = None
        #: Set while the PostgreSQL ``LISTEN`` connection is established (never on SQLite).
        self.listening = asyncio.Event()

    @property
    def active(self) -> bool:
        """Whether wake-ups reach this listener (False: its users fall back to polling)."""
        return self._transport is not None or self.listening.is_set()

    async def _start(self) -> None:
        if make_url(self.url).get_backend_name() == "postgresql":
            self._notifications = asyncio.get_running_loop().create_task(self._listen_postgresql())
        await self._bind()

    async def _listen_postgresql(self) -> None:
        """Keep one ``LISTEN`` connection to the database, re-established after a failure, and
        deliver each notification of :data:`CHANNEL` (runs until :meth:`close` cancels it)."""
        import psycopg  # the PostgreSQL driver: imported only when the database is PostgreSQL

        conninfo = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        delay = _RELISTEN_FIRST
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    delay = _RELISTEN_FIRST
                    async for notification in conn.notifies():
                        self._deliver(notification.payload)
            except psycopg.Error as exc:
                logger.warning("wake-ups from other machines paused: LISTEN failed: %s", type(exc).__name__)
            finally:
                self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RELISTEN_MAX)

    async def _bind(self) -> None:
        directory = wake_dir(self.url)
        if not _private_dir(directory):
            return
        path = directory / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        if len(str(path)) > _MAX_PATH:
            logger.warning("wake-ups disabled: the socket path %s is too long", path)
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        except OSError as exc:
            sock.close()
            with contextlib.suppress(OSError):
                path.unlink()
            logger.warning("wake-ups disabled: cannot bind %s: %s", path, exc)
            return
        self.path = path
        self._transport = transport

    def subscribe(self, topic: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (in this listener's loop) whenever ``topic`` is published; returns
        the function that unsubscribes it."""
        callbacks = self._callbacks.setdefault(topic, [])
        callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                callbacks.remove(callback)

        return unsubscribe

    def _deliver(self, topic: str) -> None:
        for callback in list(self._callbacks.get(topic, ())):
            try:
                callback()
            except Exception:
                logger.exception("wake-up callback for %r failed", topic)

    def close(self) -> None:
        if self._notifications is not None:
            self._notifications.cancel()
            self._notifications = None
            self.listening.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # the last one out removes the (empty) directory
            self.path = None


_listeners: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Listener]] = weakref.WeakKeyDictionary()


async def listen(url: str) -> Listener:
    """This event loop's listener for the database ``url`` (bound on first use)."""
    loop = asyncio.get_running_loop()
    per_loop = _listeners.setdefault(loop, {})
    key = _identity(url)
    listener = per_loop.get(key)
    if listener is None:
        listener = per_loop[key] = Listener(url)
        await listener._start()
    return listener


def close_all() -> None:
    """Close this event loop's listeners (the app's lifespan end) and remove their sockets."""
    with contextlib.suppress(RuntimeError):
        for listener in _listeners.pop(asyncio.get_running_loop(), {}).values():
            listener.close()
