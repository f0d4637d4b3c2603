"""The inbound gateway: an LMTP server (RFC 2033, :mod:`aiosmtpd`) on ``SHIPMAIL_LMTP_PORT`` in
front of the mail server's own LMTP, the one place that knows a message arrived, for which
mailbox, and with which result.

Per client transaction it opens (or reuses) one LMTP session with the mail server and relays:

* ``MAIL FROM``: sent to the mail server; its reply goes back as it is.
* ``RCPT TO``: the address goes through the resolver chain (:mod:`shipmail.inbound.resolve`);
  an address no resolver knows is refused ``550 5.1.1`` without asking the mail server; else
  ``RCPT TO`` of the mailbox's address (a subaddress of it as given) goes to the mail server
  and its reply goes back as it is (``452`` of a suspended mailbox, ...). A database failure
  answers ``451 4.3.0``. An address that reaches a mailbox of ANOTHER address (an alias, the
  catch-all) gets a mail server session of its own (the same ``MAIL FROM``, then its
  ``RCPT TO``), because its copy differs: see ``DATA``.
* ``DATA``: the message, with the gateway's ``Received:`` field on top
  (:func:`shipmail.inbound.service.received_field`), goes to the mail server, which answers once
  per accepted recipient. The copy for an alias or catch-all address also carries
  ``Delivered-To: <that address>`` (RFC 9228: the address a copy was delivered to) right below
  the ``Received:`` field: the delivery script sees the address the message was sent to, which
  the mail server's envelope no longer has (a rule's ``recipient_is``, :mod:`shipmail.rules.sieve`).
  That field is per copy, so other recipients of the same transaction never see it (no Bcc
  leaks); the replies go back in ``RCPT`` order. For each ``250`` the gateway commits a durable record of the delivery
  to its own journal (:mod:`shipmail.inbound.journal`; the records of deliveries finishing
  together share one commit, :class:`Recorder`) BEFORE it answers ``250``; right after, its mover
  turns the record into the ``inbound.record`` job (:func:`shipmail.inbound.service.accept_many`),
  which finds the stored message over JMAP and records its events and counter, off the
  delivery's path. When the record cannot be committed (the journal cannot be written) it
  answers ``451 4.3.0`` for that recipient: the sender retries, the mail server drops the copy as a duplicate of its
  Message-ID and answers ``250``, and the retry's job records the message found by its
  Message-ID (so an event is never lost, and never recorded twice). Every other reply (``4xx``,
  ``5xx``) goes back as the mail server gave it. No ``250`` is ever answered before the mail
  server's.
* ``RSET`` goes to the mail server; ``QUIT`` or a lost connection hand the mail server's session
  back to a small pool of idle sessions when it is between transactions (:class:`BackendPool`),
  so the next client does not pay for connecting and ``LHLO``; otherwise it is closed.

A mail server that cannot be reached answers ``451 4.4.1`` at ``MAIL``. Messages are not
limited in size here (the mail server's own limit applies), nor their lines in length.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import logging
import socket
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import sqlalchemy as sa
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope, Session, syntax
from sqlmodel import col, select

from shipmail import utc
from shipmail.db.engine import Database, is_lock_timeout
from shipmail.ids import new_id
from shipmail.inbound.backend import BackendError, LmtpConnection, Reply, Target
from shipmail.inbound.journal import Entry, Journal
from shipmail.inbound.resolve import base_address, resolve
from shipmail.inbound.service import accept_many, received_field
from shipmail.jmap.client import JmapClient
from shipmail.mailboxes.models import Mailbox, MailboxState
from shipmail.mailserver.base import MailServer

logger = logging.getLogger("shipmail.inbound")

UNAVAILABLE = "451 4.4.1 The mail server is not available; try again later"
LOOKUP_FAILED = "451 4.3.0 Temporary failure looking up the recipient; try again later"
NOT_RECORDED = "451 4.3.0 The delivery could not be recorded; try again later"


@dataclass
class _Accepted:
    """One accepted recipient: its mailbox and, for an address other than the mailbox's (an
    alias, the catch-all), the address as given and its own mail server session."""

    row: _Recipient
    alias: str | None = None
    conn: LmtpConnection | None = None


@dataclass
class _Transaction:
    """The mail server session of one client connection, the ``MAIL`` command of the current
    transaction and the recipients accepted so far."""

    conn: LmtpConnection | None = None
    mail_command: str | None = None
    accepted: list[_Accepted] = field(default_factory=list)
    #: Whether the mail server's session is inside a transaction (after MAIL, before its end).
    open: bool = False

    def clear(self) -> None:
        """Forget the accepted recipients, closing their own sessions."""
        for a in self.accepted:
            if a.conn is not None:
                a.conn.close()
        self.accepted.clear()

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.open = False
        self.clear()


class BackendPool:
    """Idle LMTP sessions with the mail server, between transactions, kept at most
    :data:`IDLE_SECONDS` and at most :data:`SIZE` of them: a client connection takes one (or opens
    one) at its first ``MAIL`` and gives it back when it ends."""

    SIZE = 8
    IDLE_SECONDS = 20.0

    def __init__(self, target: Target, *, hostname: str, timeout: float) -> None:
        self.target = target
        self.hostname = hostname
        self.timeout = timeout
        self._idle: list[tuple[float, LmtpConnection]] = []

    def take(self) -> LmtpConnection | None:
        """An idle session, or None (the caller opens one)."""
        now = time.monotonic()
        while self._idle:
            since, conn = self._idle.pop()
            if now - since < self.IDLE_SECONDS:
                return conn
            conn.close()
        return None

    async def open(self) -> LmtpConnection:
        return await LmtpConnection.open(self.target, hostname=self.hostname, timeout=self.timeout)

    def give_back(self, conn: LmtpConnection) -> None:
        if len(self._idle) >= self.SIZE:
            conn.close()
            return
        self._idle.append((time.monotonic(), conn))

    def close(self) -> None:
        for _, conn in self._idle:
            conn.close()
        self._idle.clear()


@dataclass
class _Pending:
    entry: Entry
    done: asyncio.Future[None]


class Recorder:
    """Commits the durable records of deliveries to the gateway's journal
    (:mod:`shipmail.inbound.journal`) and moves them into the job queue.

    Each :meth:`record` waits for the commit of its entry; entries that arrive while a commit is
    under way go into the next one together (group commit: one transaction, one fsync, for every
    delivery finishing at the same moment). The mover (:meth:`start`) then enqueues their
    ``inbound.record`` jobs in the service's database (:func:`shipmail.inbound.service.accept_many`)
    and deletes them from the journal: :data:`COALESCE_SECONDS` after a commit (the deliveries of
    a burst move in one transaction, and their record jobs then run as one), at start (what a
    killed gateway left), every :data:`IDLE_SECONDS`, and every :data:`RETRY_SECONDS` while the
    service's database fails."""

    #: Entries moved per transaction of the service's database.
    MOVE_BATCH = 500
    #: Seconds between passes of the mover while the service's database fails.
    RETRY_SECONDS = 1.0
    #: Seconds between passes of the mover when nothing woke it.
    IDLE_SECONDS = 5.0
    #: Seconds the mover waits after a wake-up, so that the deliveries of a burst share one move.
    #: Measured with ``scripts/bench events`` (200 messages in a row, quiet 2-core machine): the
    #: gateway's added p50 6.0-7.8 ms with no wait, 4.9-5.6 ms with 25 ms, 3.3-4.8 ms with 50 ms
    #: (the record jobs then run two or three at a time: API CPU 4.4-5.0 -> 1.5-2.4 ms a message),
    #: for 50 ms more from the 250 to the webhook (p95 ~100 ms against the 1 s goal).
    COALESCE_SECONDS = 0.05

    def __init__(self, db: Database, journal: Journal) -> None:
        self.db = db
        self.journal = journal
        self._queue: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        self._moved = asyncio.Event()
        self._mover: asyncio.Task[None] | None = None
        self._stopping = False

    async def record(self, mailbox_id: str, delivery_id: str, message_id: str | None, reply: str) -> None:
        """Returns once the record is committed to the journal; raises what the commit raised
        otherwise."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = Entry(mailbox_id, delivery_id, message_id, reply[:500], utc.now().isoformat())
        self._queue.append(_Pending(entry, done))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._commit_all())
        await asyncio.shield(done)

    async def _commit_all(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self.journal.append([p.entry for p in batch])
            except BaseException as exc:
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            for p in batch:
                if not p.done.done():
                    p.done.set_result(None)
            self._moved.set()

    def start(self) -> None:
        """Start the mover in the current event loop; its first pass moves what is left."""
        self._moved.set()
        self._mover = asyncio.get_running_loop().create_task(self._move_forever(), name="shipmail.inbound.mover")

    async def stop(self) -> None:
        """Wait for the commits under way, make a last pass of the mover and stop it (what it
        cannot move stays in the journal for the next start)."""
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        self._stopping = True
        self._moved.set()
        if self._mover is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._mover
            self._mover = None

    async def _move_forever(self) -> None:
        delay = self.IDLE_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), delay)
            if not self._stopping:
                await asyncio.sleep(self.COALESCE_SECONDS)  # the deliveries of a burst move together
            self._moved.clear()
            try:
                await self.move()
                delay = self.IDLE_SECONDS
            except Exception:
                logger.exception("inbound: moving journalled deliveries to the job queue failed; retrying")
                delay = self.RETRY_SECONDS
            if self._stopping:
                return

    async def move(self) -> int:
        """Enqueue the jobs of every journalled delivery, oldest first, a batch per transaction,
        deleting each batch from the journal once its transaction committed; the number moved.
        Raises what the database raised (the batch stays in the journal)."""
        total = 0
        while True:
            entries = await self.journal.oldest(self.MOVE_BATCH)
            if not entries:
                return total
            async with self.db.session() as session:
                await accept_many(session, entries)
                await session.commit()
            await self.journal.remove(entries)
            total += len(entries)
            if len(entries) < self.MOVE_BATCH:
                return total


@dataclass(frozen=True)
class _Recipient:
    """The mailbox a recipient resolved to: its id and address."""

    id: str
    address: str


#: The usable mailbox of an address: the first resolver (:func:`shipmail.inbound.resolve.resolve_exact`)
#: and the mailbox row in one point read.
_EXACT: sa.Select[Any] = cast(
    "sa.Select[Any]",
    sa.select(col(Mailbox.id), col(Mailbox.address)).where(
        col(Mailbox.address) == sa.bindparam("address"), col(Mailbox.state) == MailboxState.ACTIVE.value
    ),
)


class GatewayHandler:
    """aiosmtpd handler hooks (``handle_MAIL``, ``handle_RCPT``, ``handle_DATA``, ``handle_RSET``)."""

    def __init__(
        self, *, db: Database, journal: Journal, jmap: JmapClient, backend: Target, hostname: str, timeout: float
    ) -> None:
        self.db = db
        self.jmap = jmap
        self.backend = backend
        self.pool = BackendPool(backend, hostname=hostname, timeout=timeout)
        self.recorder = Recorder(db, journal)
        self.hostname = hostname
        self.timeout = timeout
        #: Seconds the mail server may take to store a message and answer.
        self.data_timeout = max(60.0, timeout)
        self._transactions: weakref.WeakKeyDictionary[Session, _Transaction] = weakref.WeakKeyDictionary()

    def _transaction(self, session: Session) -> _Transaction:
        found = self._transactions.get(session)
        if found is None:
            found = self._transactions[session] = _Transaction()
        return found

    def closed(self, session: Session | None) -> None:
        """The client connection is gone: end the mail server's session too."""
        if session is not None and (t := self._transactions.pop(session, None)) is not None:
            if t.conn is not None and not t.open:
                self.pool.give_back(t.conn)
                t.conn = None
            t.drop()

    async def handle_MAIL(
        self, server: LMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        t = self._transaction(session)
        t.clear()
        options = [o for o in mail_options if o.startswith(("BODY=", "SMTPUTF8"))]
        line = t.mail_command = " ".join([f"MAIL FROM:<{address}>", *options])
        reply: Reply | None = None
        if t.conn is None and (pooled := self.pool.take()) is not None:
            t.conn = pooled
            try:
                reply = await pooled.command(line)
            except BackendError:
                reply = None
            if reply is None or reply.code == 421:
                reply = None
                t.drop()  # the mail server ended the idle session: open a new one below
        if reply is None:
            if t.conn is None:
                try:
                    t.conn = await self.pool.open()
                except BackendError as exc:
                    logger.warning("inbound: %s", exc)
                    return UNAVAILABLE
            try:
                reply = await t.conn.command(line)
            except BackendError as exc:
                logger.warning("inbound: %s", exc)
                t.drop()
                return UNAVAILABLE
        if reply.ok:
            t.open = True
            envelope.mail_from = address or "<>"  # the null reverse-path must not read as "no MAIL yet"
            envelope.mail_options.extend(mail_options)
        return reply.wire()

    async def _mailbox_for(self, address: str) -> _Recipient | None:
        """The usable mailbox ``address`` delivers to (:func:`shipmail.inbound.resolve.resolve`),
        or None. The common case, the address of a mailbox itself, is one point read
        (:class:`shipmail.db.engine.PointReader`: no thread hop on SQLite); the others go through
        the resolver chain."""
        try:
            found = await self.db.reader.one(_EXACT, {"address": address.strip().lower()})
        except Exception as exc:
            if not is_lock_timeout(exc):
                raise
            found = None  # a lock met by the point read: the session below waits for it
        if found is not None:
            return _Recipient(str(found[0]), str(found[1]))
        async with self.db.session() as session:
            target = await resolve(session, address)
            if target is None:
                return None
            row = (
                await session.exec(
                    select(Mailbox).where(
                        col(Mailbox.address) == target, col(Mailbox.state) == MailboxState.ACTIVE.value
                    )
                )
            ).first()
            return _Recipient(row.id, row.address) if row is not None else None

    async def handle_RCPT(
        self, server: LMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        t = self._transaction(session)
        if t.conn is None:
            return "503 5.5.1 Error: need MAIL command"
        try:
            row = await self._mailbox_for(address)
        except Exception:
            logger.exception("inbound: resolving %r failed", address)
            return LOOKUP_FAILED
        if row is None:
            return f"550 5.1.1 <{address}>: Recipient address rejected: no such mailbox"
        given = address.strip().lower()
        if base_address(given) == row.address:
            try:
                reply = await t.conn.command(f"RCPT TO:<{given}>")
            except BackendError as exc:
                logger.warning("inbound: %s", exc)
                t.drop()
                return UNAVAILABLE
            accepted = _Accepted(row)
        else:
            # An alias or the catch-all: a session of its own, for a copy with Delivered-To.
            try:
                reply, conn = await self._own_session(t, row.address)
            except BackendError as exc:
                logger.warning("inbound: %s", exc)
                return UNAVAILABLE
            accepted = _Accepted(row, given if _traceable(given) else None, conn)
        if reply.ok:
            envelope.rcpt_tos.append(address)
            t.accepted.append(accepted)
        return reply.wire()

    async def _own_session(self, t: _Transaction, mailbox_address: str) -> tuple[Reply, LmtpConnection | None]:
        """A new mail server session with the transaction's ``MAIL`` and ``RCPT TO`` of
        ``mailbox_address``: the reply (of ``MAIL`` when it failed) and the session when the
        recipient was accepted (else it is closed)."""
        conn = await self.pool.open()
        try:
            reply = await conn.command(t.mail_command or "MAIL FROM:<>")
            if reply.ok:
                reply = await conn.command(f"RCPT TO:<{mailbox_address}>")
        except BaseException:
            conn.close()
            raise
        if not reply.ok:
            await conn.quit()
            return reply, None
        return reply, conn

    async def handle_RSET(self, server: LMTP, session: Session, envelope: Envelope) -> str:
        t = self._transaction(session)
        t.clear()
        if t.conn is not None:
            try:
                await t.conn.command("RSET")
                t.open = False
            except BackendError:
                t.drop()
        return "250 2.0.0 OK"

    async def handle_DATA(self, server: LMTP, session: Session, envelope: Envelope) -> str:
        t = self._transaction(session)
        accepted = list(t.accepted)
        t.accepted.clear()
        own = [a for a in accepted if a.conn is not None]
        if t.conn is None or not accepted:
            for a in own:
                assert a.conn is not None
                a.conn.close()
            return "503 5.5.1 Error: need RCPT command"
        delivery_id = new_id("dlv")
        original = envelope.original_content or b""
        peer = session.peer[0] if isinstance(session.peer, tuple) else None
        received = received_field(delivery_id, session.host_name, peer, self.hostname)
        shared = [a for a in accepted if a.conn is None]
        replies: dict[int, Reply] = {}
        try:
            if shared:
                start, got = await t.conn.data(received + original, len(shared), self.data_timeout)
                if start.code != 354:
                    for a in own:
                        assert a.conn is not None
                        a.conn.close()
                    return start.wire()
                replies.update((id(a), r) for a, r in zip(shared, got, strict=True))
            else:
                await t.conn.command("RSET")  # the MAIL of this transaction, without recipients there
        except BackendError as exc:
            logger.warning("inbound: %s", exc)
            t.drop()
            for a in own:
                assert a.conn is not None
                a.conn.close()
            return UNAVAILABLE
        t.open = False  # the mail server's transaction ended with its replies
        for a in own:
            replies[id(a)] = await self._own_data(a, received, original)
        message_id = _message_id(original)
        answers = await asyncio.gather(*(self._after(a.row, replies[id(a)], delivery_id, message_id) for a in accepted))
        return "\r\n".join(answers)

    async def _own_data(self, a: _Accepted, received: bytes, original: bytes) -> Reply:
        """``DATA`` of the copy for an alias or catch-all recipient on its own session (closed
        afterwards): ``Received``, ``Delivered-To: <the address as given>``, the message."""
        assert a.conn is not None
        trace = f"Delivered-To: {a.alias}\r\n".encode() if a.alias is not None else b""
        try:
            start, got = await a.conn.data(received + trace + original, 1, self.data_timeout)
        except BackendError as exc:
            logger.warning("inbound: %s", exc)
            a.conn.close()
            return Reply(451, (UNAVAILABLE[4:],))
        await a.conn.quit()
        return got[0] if start.code == 354 and got else start

    async def _after(self, row: _Recipient, reply: Reply, delivery_id: str, message_id: str | None) -> str:
        """The answer for one recipient: the mail server's, once its 250 is durably recorded."""
        if reply.code != 250:
            return reply.wire()
        try:
            await self.recorder.record(row.id, delivery_id, message_id, reply.wire())
        except Exception:
            logger.exception("inbound: recording delivery %s to %s failed", delivery_id, row.address)
            return NOT_RECORDED
        return reply.wire()


def _traceable(address: str) -> bool:
    """Whether ``address`` can be written into a header field as it is: printable, no white
    space or control characters, at most 254 characters (RFC 5321 section 4.5.3.1.3)."""
    return 0 < len(address) <= 254 and all(c.isprintable() and not c.isspace() for c in address)


def _message_id(message: bytes) -> str | None:
    """The Message-ID of ``message`` without angle brackets, or None."""
    head = message.split(b"\r\n\r\n", 1)[0]
    try:
        value = email.parser.BytesHeaderParser().parsebytes(head + b"\r\n\r\n").get("Message-ID")
    except Exception:
        return None
    if value is None:
        return None
    text = str(value).strip()
    return text[1:-1].strip() if text.startswith("<") and text.endswith(">") else text or None


class _GatewayLMTP(LMTP):
    """aiosmtpd's LMTP without its line length limit (the mail server has its own), ending the
    mail server's session when the client's connection goes."""

    line_length_limit = 1 << 20

    def __init__(self, handler: GatewayHandler, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self._gateway = handler

    def connection_lost(self, error: Exception | None) -> None:
        self._gateway.closed(self.session)
        super().connection_lost(error)

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        """``MAIL FROM:<>`` (the null reverse-path of bounces and auto-replies, RFC 5321 section
        4.5.5) goes to the handler; aiosmtpd 1.4 refuses it as a syntax error (501)."""
        rest = self._strip_command_keyword("FROM:", arg) if arg else None
        if rest is None or not rest.strip().startswith("<>"):
            await super().smtp_MAIL(arg)
            return
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if self.envelope.mail_from:
            await self.push("503 Error: nested MAIL command")
            return
        status = await self._call_handler_hook("MAIL", "", rest.strip()[2:].upper().split())
        await self.push(status)


class Gateway:
    """The gateway on an existing listening socket: :meth:`serve` starts accepting, :meth:`close`
    stops (connections being served are ended)."""

    def __init__(
        self,
        *,
        db: Database,
        journal: Journal,
        jmap: JmapClient,
        backend: Target,
        hostname: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.hostname = hostname or socket.gethostname() or "shipmail"
        self.journal = journal
        self.handler = GatewayHandler(
            db=db, journal=journal, jmap=jmap, backend=backend, hostname=self.hostname, timeout=timeout
        )
        self._server: asyncio.Server | None = None

    def _protocol(self) -> _GatewayLMTP:
        return _GatewayLMTP(
            self.handler,
            hostname=self.hostname,
            ident="shipmail LMTP gateway",
            data_size_limit=None,
            enable_SMTPUTF8=True,
            decode_data=False,
        )

    async def serve(self, sock: socket.socket) -> None:
        """Start accepting connections on ``sock`` (listening, TCP or Unix)."""
        loop = asyncio.get_running_loop()
        self.handler.recorder.start()
        self._server = await loop.create_server(self._protocol, sock=sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
        self.handler.pool.close()
        await self.handler.recorder.stop()
        await self.journal.close()


@asynccontextmanager
async def running_gateway(
    *,
    database_url: str,
    journal: Path,
    mail: MailServer,
    backend: Target,
    sock: socket.socket,
    jmap_timeout: float,
) -> AsyncIterator[Gateway]:
    """A :class:`Gateway` serving on ``sock`` with its own database pool, its journal at
    ``journal`` (:func:`shipmail.inbound.journal.journal_path`) and its JMAP client (over
    ``mail``'s transport), until the block ends."""
    db = Database(database_url)
    transport = mail.jmap_transport()
    http = (
        httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(jmap_timeout, connect=min(1.0, jmap_timeout)),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        if transport is not None
        else None
    )
    jmap = JmapClient(mail, timeout=jmap_timeout, http=http)
    gateway = Gateway(db=db, journal=Journal(journal), jmap=jmap, backend=backend, timeout=max(jmap_timeout, 5.0))
    try:
        await gateway.serve(sock)
        yield gateway
    finally:
        await gateway.close()
        await jmap.aclose()
        await db.dispose()
