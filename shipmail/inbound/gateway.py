"""The inbound gateway: an LMTP server (RFC 2033, :mod:`aiosmtpd`) on ``SHIPMAIL_LMTP_PORT`` in
front of the mail server's own LMTP, the one place that knows a message arrived, for which
mailbox, and with which result.

Per client transaction it opens (or reuses) one LMTP session with the mail server and relays:

* ``MAIL FROM``: sent to the mail server; its reply goes back as it is.
* ``RCPT TO``: the address goes through the resolver chain (:mod:`shipmail.inbound.resolve`);
  an address no resolver knows is refused ``550 5.1.1`` without asking the mail server; else
  ``RCPT TO`` of the mailbox's address (a subaddress of it as given) goes to the mail server
  and its reply goes back as it is (``452`` of a suspended mailbox, ...). A database failure
  answers ``451 4.3.0``.
* ``DATA``: the message, with the gateway's ``Received:`` field on top
  (:func:`shipmail.inbound.service.received_field`), goes to the mail server, which answers once
  per accepted recipient. For each ``250`` the gateway commits a durable record of the delivery
  (the ``inbound.record`` job, :func:`shipmail.inbound.service.accept`; the records of deliveries
  finishing together share one commit, :class:`Recorder`) BEFORE it answers ``250``; the job
  then finds the stored message over JMAP and records its events and counter, off the delivery's
  path. When the record cannot be committed (database unavailable) it answers ``451 4.3.0`` for
  that recipient: the sender retries, the mail server drops the copy as a duplicate of its
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
from typing import Any

import httpx
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope, Session, syntax
from sqlmodel import col, select

from shipmail.db.engine import Database
from shipmail.ids import new_id
from shipmail.inbound.backend import BackendError, LmtpConnection, Reply, Target
from shipmail.inbound.resolve import base_address, resolve
from shipmail.inbound.service import accept, received_field
from shipmail.jmap.client import JmapClient
from shipmail.mailboxes.models import Mailbox, MailboxState
from shipmail.mailserver.base import MailServer

logger = logging.getLogger("shipmail.inbound")

UNAVAILABLE = "451 4.4.1 The mail server is not available; try again later"
LOOKUP_FAILED = "451 4.3.0 Temporary failure looking up the recipient; try again later"
NOT_RECORDED = "451 4.3.0 The delivery could not be recorded; try again later"


@dataclass
class _Transaction:
    """The mail server session of one client connection and the mailboxes accepted so far."""

    conn: LmtpConnection | None = None
    accepted: list[Mailbox] = field(default_factory=list)
    #: Whether the mail server's session is inside a transaction (after MAIL, before its end).
    open: bool = False

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.open = False
        self.accepted.clear()


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
    mailbox_id: str
    delivery_id: str
    message_id: str | None
    reply: str
    done: asyncio.Future[None]


class Recorder:
    """Commits the durable records of deliveries (:func:`shipmail.inbound.service.accept`): each
    :meth:`record` waits for the commit of its record; records that arrive while a commit is
    under way go into the next one together (group commit: one transaction for every delivery
    finishing at the same moment)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None

    async def record(self, mailbox_id: str, delivery_id: str, message_id: str | None, reply: str) -> None:
        """Returns once the record is committed; raises what the commit raised otherwise."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(mailbox_id, delivery_id, message_id, reply, done))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._commit_all())
        await asyncio.shield(done)

    async def _commit_all(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                async with self.db.session() as session:
                    for p in batch:
                        await accept(session, p.mailbox_id, p.delivery_id, p.message_id, p.reply)
                    await session.commit()
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


class GatewayHandler:
    """aiosmtpd handler hooks (``handle_MAIL``, ``handle_RCPT``, ``handle_DATA``, ``handle_RSET``)."""

    def __init__(self, *, db: Database, jmap: JmapClient, backend: Target, hostname: str, timeout: float) -> None:
        self.db = db
        self.jmap = jmap
        self.backend = backend
        self.pool = BackendPool(backend, hostname=hostname, timeout=timeout)
        self.recorder = Recorder(db)
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
        t.accepted.clear()
        options = [o for o in mail_options if o.startswith(("BODY=", "SMTPUTF8"))]
        line = " ".join([f"MAIL FROM:<{address}>", *options])
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

    async def _mailbox_for(self, address: str) -> Mailbox | None:
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
            if row is not None:
                session.expunge(row)
            return row

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
        deliver_to = given if base_address(given) == row.address else row.address
        try:
            reply = await t.conn.command(f"RCPT TO:<{deliver_to}>")
        except BackendError as exc:
            logger.warning("inbound: %s", exc)
            t.drop()
            return UNAVAILABLE
        if reply.ok:
            envelope.rcpt_tos.append(address)
            t.accepted.append(row)
        return reply.wire()

    async def handle_RSET(self, server: LMTP, session: Session, envelope: Envelope) -> str:
        t = self._transaction(session)
        t.accepted.clear()
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
        if t.conn is None or not accepted:
            return "503 5.5.1 Error: need RCPT command"
        delivery_id = new_id("dlv")
        original = envelope.original_content or b""
        peer = session.peer[0] if isinstance(session.peer, tuple) else None
        content = received_field(delivery_id, session.host_name, peer, self.hostname) + original
        try:
            start, replies = await t.conn.data(content, len(accepted), self.data_timeout)
        except BackendError as exc:
            logger.warning("inbound: %s", exc)
            t.drop()
            return UNAVAILABLE
        if start.code != 354:
            return start.wire()
        t.open = False  # the mail server's transaction ended with its replies
        message_id = _message_id(original)
        answers = await asyncio.gather(
            *(self._after(row, reply, delivery_id, message_id) for row, reply in zip(accepted, replies, strict=True))
        )
        return "\r\n".join(answers)

    async def _after(self, row: Mailbox, reply: Reply, delivery_id: str, message_id: str | None) -> str:
        """The answer for one recipient: the mail server's, once its 250 is durably recorded."""
        if reply.code != 250:
            return reply.wire()
        try:
            await self.recorder.record(row.id, delivery_id, message_id, reply.wire())
        except Exception:
            logger.exception("inbound: recording delivery %s to %s failed", delivery_id, row.address)
            return NOT_RECORDED
        return reply.wire()


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
        jmap: JmapClient,
        backend: Target,
        hostname: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.hostname = hostname or socket.gethostname() or "shipmail"
        self.handler = GatewayHandler(db=db, jmap=jmap, backend=backend, hostname=self.hostname, timeout=timeout)
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
        self._server = await loop.create_server(self._protocol, sock=sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
        self.handler.pool.close()


@asynccontextmanager
async def running_gateway(
    *, database_url: str, mail: MailServer, backend: Target, sock: socket.socket, jmap_timeout: float
) -> AsyncIterator[Gateway]:
    """A :class:`Gateway` serving on ``sock`` with its own database pool and JMAP client (over
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
    gateway = Gateway(db=db, jmap=jmap, backend=backend, timeout=max(jmap_timeout, 5.0))
    try:
        await gateway.serve(sock)
        yield gateway
    finally:
        await gateway.close()
        await jmap.aclose()
        await db.dispose()
