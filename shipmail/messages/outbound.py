"""The one outgoing path: every message that leaves goes through this durable queue.

What enters it
    The mail server's ``sendmail`` program leaves every message it sends in its spool
    (:meth:`shipmail.mailserver.base.MailServer.sent_mail_spool`: for Cyrus, one ``.eml`` per
    message with ``X-Envelope-From``/``X-Envelope-To`` headers, :mod:`shipmail.mailserver.sendmail`):
    our own sends (``EmailSubmission/set``, :mod:`shipmail.messages.service`) and Cyrus's Sieve
    vacation replies and redirects alike. The periodic job :data:`SPOOL_KIND` (every
    :data:`SPOOL_PERIOD` seconds, and at once after a send) takes each file into the ``outgoing``
    table (:class:`~shipmail.messages.models.Outgoing`: envelope, bytes) together with a
    :data:`DELIVER_KIND` job, in one transaction, and then removes the file. A file is taken once
    (``spool_name`` is unique): a crash between the commit and the removal only leaves a file the
    next run removes.

How it leaves (:func:`deliver`, one job per message, :mod:`shipmail.jobs`: durable, leased, run
again after a crash)
    The bytes that leave are produced by :func:`_finalize` (the ONE place: DKIM signing belongs
    there). Recipients on one of our own domains (the ``domains`` table) are delivered over LMTP
    (:meth:`MailServer.deliver`, as a local MTA would: the recipient's rules run); the others go
    to ``SHIPMAIL_SMTP_RELAY`` (``host:port``; STARTTLS when the relay offers it; AUTH with
    ``SHIPMAIL_SMTP_USERNAME``/``PASSWORD``, only over TLS or to a loopback relay) or, when no
    relay is set, into the outbox directory (``<data dir>/outbox/*.eml``, the same format as the
    spool). A recipient done (delivered, relayed, or refused for good: 5xx) is never tried
    again; the ones refused temporarily (4xx, relay or LMTP unreachable) are retried with
    exponential back-off (``SHIPMAIL_SEND_RETRY_BASE`` doubling, at most 1 h) until
    ``SHIPMAIL_SEND_RETRY_SECONDS`` after the message was queued, then they fail.

What the API shows
    A message sent through the API (``messages`` row, linked by its ``Message-ID``) is ``queued``
    until every recipient is done, with ``last_error`` while a temporary refusal is retried;
    then ``sent`` (at least one recipient got it; refusals in ``last_error``) or ``failed``
    (none did).
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import ipaddress
import logging
import secrets
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import jobs
from shipmail.config import Settings
from shipmail.domains import dkim
from shipmail.domains.models import Domain
from shipmail.events import service as events
from shipmail.jobs import Handler, Job
from shipmail.mailserver.base import DeliveryRefused, MailServerUnavailable
from shipmail.mailserver.sendmail import parse_relay, store_message
from shipmail.messages.models import MessageStatus, OutboundMessage, Outgoing, OutgoingStatus
from shipmail.runtime import Services
from shipmail.utc import now as utcnow

logger = logging.getLogger("shipmail.messages.outbound")

#: The periodic job that takes the mail server's spool into the queue, and its key.
SPOOL_KIND = "messages.spool"
SPOOL_KEY = "messages.spool"
#: Seconds between two looks at the spool (a send looks at once).
SPOOL_PERIOD = 2.0
#: The job that delivers one ``outgoing`` row (payload ``{"id": <outgoing id>}``).
DELIVER_KIND = "messages.deliver"
#: Seconds the SMTP relay may take per command.
RELAY_TIMEOUT = 30.0
#: Longest back-off between two attempts of one message, in seconds.
MAX_RETRY_DELAY = 3600.0


async def _finalize(session: AsyncSession, settings: Settings, message: bytes, from_domain: str) -> bytes:
    """The bytes that leave, made from the bytes as submitted (``message``, CRLF) of a message
    whose sender is on ``from_domain``. THE one place where a message is changed on its way out,
    for every recipient (local, relay, outbox): signed with the domain's DKIM keys when the
    domain is one of ours and has them (:func:`shipmail.domains.dkim.signer_for`, RFC 6376;
    mail the mail server forwards keeps its foreign sender domain and leaves unsigned). A signing
    failure is logged and the message leaves unsigned rather than not at all."""
    if not from_domain:
        return message
    sign = await dkim.signer_for(session, from_domain, settings=settings)
    if sign is None:
        return message
    try:
        return await asyncio.to_thread(sign, message)
    except Exception:
        logger.exception("DKIM signing for %s failed: the message leaves unsigned", from_domain)
        return message


# ------------------------------------------------------------------------------------------ spool


@dataclass(frozen=True)
class Spooled:
    """One spool file read: envelope sender (``""`` for the null sender), recipients, message."""

    sender: str
    recipients: list[str]
    data: bytes


def parse_spool_file(raw: bytes) -> Spooled:
    """Split a spool file (``X-Envelope-From: <s>`` and ``X-Envelope-To: <r>,`` folded per
    further ``<r>``, then the message) into envelope and message; ``ValueError`` if malformed."""
    head = b"X-Envelope-From: <"
    if not raw.startswith(head):
        raise ValueError("no X-Envelope-From")
    end = raw.index(b">\r\n", len(head))
    sender = raw[len(head) : end].decode("utf-8", "surrogateescape")
    rest = raw[end + 3 :]
    if not rest.startswith(b"X-Envelope-To: "):
        raise ValueError("no X-Envelope-To")
    recipients: list[str] = []
    position = len(b"X-Envelope-To: ")
    while True:
        line_end = rest.index(b"\r\n", position)
        line = rest[position:line_end].strip().rstrip(b",")
        if not (line.startswith(b"<") and line.endswith(b">")):
            raise ValueError("malformed X-Envelope-To")
        recipients.append(line[1:-1].decode("utf-8", "surrogateescape"))
        position = line_end + 2
        if not rest.startswith(b" ", position):
            break
        position += 1
    return Spooled(sender=sender, recipients=recipients, data=rest[position:])


def _message_id_of(data: bytes) -> str | None:
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    value = headers.get("Message-ID")
    return str(value).strip() if value else None


async def _link(session: AsyncSession, spooled: Spooled) -> str | None:
    """Our message row (``msg_...``) this spooled message is, by Message-ID and sender; None for
    mail the server sends by itself (vacation replies, redirects)."""
    message_id = _message_id_of(spooled.data)
    if not message_id or not spooled.sender:
        return None
    row = (
        await session.exec(
            select(OutboundMessage)
            .where(OutboundMessage.rfc_message_id == message_id)
            .where(sa.func.lower(OutboundMessage.from_address) == spooled.sender.lower())
        )
    ).first()
    return row.id if row is not None else None


async def take_spool(svc: Services) -> int:
    """Move every file of the mail server's spool into the queue; the number taken."""
    spool = svc.mail.sent_mail_spool()
    if spool is None or not spool.is_dir():
        return 0
    taken = 0
    for path in sorted(spool.glob("*.eml")):  # never the hidden temporary files
        try:
            raw = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            continue  # another worker took it
        try:
            spooled = parse_spool_file(raw)
        except ValueError as exc:
            logger.error("unreadable spool file %s (%s): left in place", path.name, exc)
            continue
        if await _enqueue_spooled(svc, path.name, spooled):
            taken += 1
        path.unlink(missing_ok=True)
    return taken


async def _enqueue_spooled(svc: Services, name: str, spooled: Spooled) -> bool:
    async with svc.db.session() as session:
        if (await session.exec(select(Outgoing.id).where(Outgoing.spool_name == name))).first() is not None:
            return False
        try:
            await enqueue(session, spooled, spool_name=name, message_id=await _link(session, spooled))
            await session.commit()
        except sa.exc.IntegrityError:
            await session.rollback()  # another worker took the same file
            return False
    return True


async def enqueue(
    session: AsyncSession, message: Spooled, *, spool_name: str | None = None, message_id: str | None = None
) -> Outgoing:
    """Queue ``message`` (envelope and CRLF bytes) to leave through the one outgoing path, in
    ``session``'s transaction (the caller commits): the service's own mail (a forwarding
    confirmation) enters here, as every spool file of the mail server does. ``spool_name``: the
    spool file it came from (unique; default a fresh name); ``message_id``: the API message
    (``msg_...``) it is a copy of."""
    now = utcnow()
    sender_domain = message.sender.rpartition("@")[2].lower()
    row = Outgoing(
        spool_name=spool_name or f"service-{secrets.token_hex(12)}",
        message_id=message_id,
        sender=message.sender,
        from_domain=sender_domain or _from_header_domain(message.data),
        pending=list(dict.fromkeys(message.recipients)),
        refused={},
        data=message.data,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    assert row.id is not None
    await jobs.enqueue(session, DELIVER_KIND, {"id": row.id}, key=f"outgoing:{row.id}")
    return row


def _from_header_domain(data: bytes) -> str:
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(data)
    return str(headers.get("From") or "").rpartition("@")[2].strip(" >").lower()


async def wake_spool(session: AsyncSession) -> None:
    """Have the spool looked at right after ``session`` commits (a send just left a file there)."""
    await jobs.enqueue(session, SPOOL_KIND, key=SPOOL_KEY, run_at=utcnow(), replace=True)


async def ensure_spool_job(svc: Services) -> None:
    """Make sure the periodic spool job exists (at start; idempotent). Never raises: with the
    database down at start, it is logged, and the next send (:func:`wake_spool`) or start makes
    the job."""
    try:
        async with svc.db.session() as session:
            await jobs.enqueue(session, SPOOL_KIND, key=SPOOL_KEY)
            await session.commit()
    except Exception as exc:
        logger.warning("could not schedule the outgoing spool job: %s: %s", type(exc).__name__, exc)


async def spool_job(job: Job, svc: Services) -> None:
    """Handler of :data:`SPOOL_KIND`: take the spool, then again in :data:`SPOOL_PERIOD` s."""
    try:
        await take_spool(svc)
    except Exception:
        logger.exception("could not take the outgoing spool")
    raise jobs.Retry(after=SPOOL_PERIOD)


# ---------------------------------------------------------------------------------------- delivery


@dataclass
class Attempt:
    """What one attempt did: recipients done, refused for good (with the reply), still pending."""

    done: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    temporary: dict[str, str] = field(default_factory=dict)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


async def _local_domains(session: AsyncSession, recipients: list[str]) -> set[str]:
    wanted = {_domain(r) for r in recipients}
    if not wanted:
        return set()
    names = (await session.exec(select(Domain.name).where(col(Domain.name).in_(sorted(wanted))))).all()
    return {str(n).lower() for n in names}


async def _deliver_local(svc: Services, recipients: list[str], data: bytes, sender: str, attempt: Attempt) -> None:
    try:
        await svc.mail.deliver(recipients, data, sender)
        attempt.done += recipients
    except DeliveryRefused as exc:
        attempt.done += exc.delivered
        for rcpt, (code, text) in exc.refused.items():
            (attempt.refused if code >= 500 else attempt.temporary)[rcpt] = f"{code} {text}"
    except MailServerUnavailable as exc:
        for rcpt in recipients:
            attempt.temporary[rcpt] = f"mail server unavailable: {exc}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def relay(settings: Settings, sender: str, recipients: list[str], data: bytes) -> Attempt:
    """Hand ``data`` to ``settings.smtp_relay`` for ``recipients`` (blocking: run in a thread).
    STARTTLS when offered; AUTH when a username is set, only over TLS or to a loopback relay."""
    attempt = Attempt()
    assert settings.smtp_relay
    host, port = parse_relay(settings.smtp_relay)
    options = ["SMTPUTF8"] if any(not a.isascii() for a in [sender, *recipients]) else []
    try:
        with smtplib.SMTP(host, port, timeout=RELAY_TIMEOUT) as smtp:
            smtp.ehlo()
            tls = False
            if smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
                tls = True
            if settings.smtp_username:
                if not tls and not _is_loopback(host):
                    for rcpt in recipients:
                        attempt.temporary[rcpt] = "the relay offers no STARTTLS: credentials are not sent in clear"
                    return attempt
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            refused = smtp.sendmail(sender, recipients, data, mail_options=options)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients
    except smtplib.SMTPResponseException as exc:  # sender refused, DATA refused, AUTH refused
        reply = f"{exc.smtp_code} {_text(exc.smtp_error)}"
        target = attempt.refused if exc.smtp_code >= 500 else attempt.temporary
        for rcpt in recipients:
            target[rcpt] = reply
        return attempt
    except (OSError, smtplib.SMTPException) as exc:
        for rcpt in recipients:
            attempt.temporary[rcpt] = f"relay unreachable: {type(exc).__name__}: {exc}"
        return attempt
    for rcpt in recipients:
        if rcpt in refused:
            code, text = refused[rcpt]
            reply = f"{code} {_text(text)}"
            (attempt.refused if code >= 500 else attempt.temporary)[rcpt] = reply
        else:
            attempt.done.append(rcpt)
    return attempt


async def _send_remote(svc: Services, recipients: list[str], data: bytes, sender: str, attempt: Attempt) -> None:
    settings = svc.settings
    if settings.smtp_relay:
        got = await asyncio.to_thread(relay, settings, sender, recipients, data)
        attempt.done += got.done
        attempt.refused.update(got.refused)
        attempt.temporary.update(got.temporary)
        return
    outbox: Path = settings.outbox_dir
    try:
        await asyncio.to_thread(_store, outbox, sender, recipients, data)
        attempt.done += recipients
    except OSError as exc:
        for rcpt in recipients:
            attempt.temporary[rcpt] = f"outbox not writable: {exc}"


def _store(outbox: Path, sender: str, recipients: list[str], data: bytes) -> None:
    outbox.mkdir(parents=True, exist_ok=True)
    store_message(outbox, sender, recipients, data)


def _retry_delay(settings: Settings, attempts: int) -> float:
    return jobs.backoff(attempts, base=settings.send_retry_base, cap=MAX_RETRY_DELAY)


async def deliver(job: Job, svc: Services) -> None:
    """Handler of :data:`DELIVER_KIND`: one attempt at every pending recipient of the row."""
    outgoing_id = int(job.payload["id"])
    async with svc.db.session() as session:
        row = await session.get(Outgoing, outgoing_id)
        if row is None or row.status != OutgoingStatus.QUEUED:
            return
        pending = list(row.pending)
        local_domains = await _local_domains(session, pending)
        data = await _finalize(session, svc.settings, row.data, row.from_domain)
    attempt = Attempt()
    local = [r for r in pending if _domain(r) in local_domains]
    remote = [r for r in pending if _domain(r) not in local_domains]
    if local:
        await _deliver_local(svc, local, data, row.sender, attempt)
    if remote:
        await _send_remote(svc, remote, data, row.sender, attempt)
    retry_after = await _record(svc, outgoing_id, attempt)
    if retry_after is not None:
        raise jobs.Retry(after=retry_after, reason=next(iter(attempt.temporary.values()), "temporary failure"))


async def _record(svc: Services, outgoing_id: int, attempt: Attempt) -> float | None:
    """Store what ``attempt`` did; the delay before the next attempt, or None when done."""
    async with svc.db.session() as session:
        row = await session.get(Outgoing, outgoing_id)
        if row is None:
            return None
        now = utcnow()
        row.attempts += 1
        row.refused = {**row.refused, **attempt.refused}
        still = [r for r in row.pending if r in attempt.temporary]
        expired = now >= row.created_at + timedelta(seconds=svc.settings.send_retry_seconds)
        if still and expired:
            row.refused = {
                **row.refused,
                **{r: f"gave up after {row.attempts} attempts: {attempt.temporary[r]}" for r in still},
            }
            still = []
        row.pending = still
        row.last_error = (
            "; ".join(f"{r}: {e}" for r, e in {**attempt.temporary, **attempt.refused}.items())[:1000] or None
        )
        row.updated_at = now
        row.delivered = [*row.delivered, *attempt.done]
        if not still:
            row.status = OutgoingStatus.SENT if row.delivered else OutgoingStatus.FAILED
        session.add(row)
        if row.message_id is not None:
            await _update_message(session, row, done=not still)
        await session.commit()
        if still:
            return _retry_delay(svc.settings, row.attempts)
        return None


async def _update_message(session: AsyncSession, row: Outgoing, *, done: bool) -> None:
    message = await session.get(OutboundMessage, row.message_id)
    if message is None:
        return
    message.last_error = row.last_error
    message.updated_at = utcnow()
    if done:
        if row.status == OutgoingStatus.FAILED:
            message.status = MessageStatus.FAILED
        else:
            message.status = MessageStatus.SENT
            await message_sent(session, message)
    session.add(message)


async def message_sent(session: AsyncSession, message: OutboundMessage) -> None:
    """THE call site where ``message.sent`` is recorded (:func:`shipmail.events.service.record`,
    which also queues it for the organisation's webhooks): ``message`` left for every recipient
    that accepts it, in ``session`` (committed by the caller). One event per message (keyed by
    its id: a repeated attempt records nothing more)."""
    await events.record(
        session,
        organization_id=message.organization_id,
        mailbox_id=message.mailbox_id,
        type="message.sent",
        data={
            "message_id": message.id,
            "email_id": message.email_id,
            "thread_id": message.thread_id,
            "rfc_message_id": message.rfc_message_id,
            "from": message.from_address,
            "to": [a.get("address") for a in message.to_addresses],
            "cc": [a.get("address") for a in message.cc_addresses],
            "subject": message.subject,
            "status": message.status,
        },
        key=message.id,
    )


#: This feature's background jobs (composition: :data:`shipmail.tasks.HANDLERS`).
handlers: dict[str, Handler] = {SPOOL_KIND: spool_job, DELIVER_KIND: deliver}
