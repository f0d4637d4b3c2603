"""Forwarding destinations of a mailbox: add (a confirmation link goes to the destination), confirm
(the link's single-use token), list, remove; the active ones compiled into the mailbox's delivery
script (:mod:`shipmail.forwarding.sieve` through :func:`shipmail.delivery.service.update_and_install`).

Rules (Shipmail ``createMailboxForwarding``/``deleteMailboxForwarding``):

* at most :data:`~shipmail.forwarding.schemas.MAX_DESTINATIONS` destinations per mailbox, pending
  and active together (422 ``too_many_destinations``); not the mailbox's own address (422);
* adding a destination that is pending sends a new link (the old one stops working); one that is
  active answers it as it is;
* the link carries a random token (256 bits) stored only as its SHA-256, valid for
  :data:`CONFIRMATION_TTL`, used once; confirming makes the destination active and installs the
  new script in the same transaction (the mailbox row locked: concurrent changes of its
  settings are serialised);
* removing an active destination installs the script without it, then deletes the record
  (a script the server refuses leaves both as they were).

The confirmation mail goes out through ONE function, :func:`_send_confirmation`.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import utc
from shipmail.delivery import service as delivery
from shipmail.forwarding.models import ForwardingStatus, MailboxForwarding
from shipmail.forwarding.schemas import MAX_DESTINATIONS
from shipmail.http.errors import NotFound, ValidationFailed
from shipmail.ids import new_id
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.models import Mailbox, MailboxState
from shipmail.messages import outbound
from shipmail.runtime import Services

logger = logging.getLogger("shipmail.forwarding")

#: How long a confirmation link works.
CONFIRMATION_TTL = timedelta(hours=24)
#: Path of the public confirmation endpoint under ``/v1`` (the token follows).
CONFIRM_PATH = "/forwarding-confirmations/"


def token_digest(token: str) -> str:
    """What the database keeps of a confirmation token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def list_all(
    session: AsyncSession, organization_id: str, mailbox_id: str
) -> tuple[Mailbox, list[MailboxForwarding]]:
    """The mailbox and its destinations, oldest first (404/409 as :func:`shipmail.mailboxes.service.get`)."""
    mailbox = await mailboxes.get(session, organization_id, mailbox_id)
    return mailbox, await _rows(session, mailbox.id)


async def _rows(session: AsyncSession, mailbox_id: str) -> list[MailboxForwarding]:
    stmt = (
        select(MailboxForwarding)
        .where(col(MailboxForwarding.mailbox_id) == mailbox_id)
        .order_by(col(MailboxForwarding.created_at), col(MailboxForwarding.id))
    )
    return list((await session.exec(stmt)).all())


def _problem(code: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, details=[{"field": "destination", "code": code, "message": message}])


async def create(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, destination: str, base_url: str
) -> MailboxForwarding:
    """Add ``destination`` (already validated, lower-cased) or send its link again; committed.
    ``base_url``: where the API is reached (the link is ``<base_url>/v1/forwarding-confirmations/<token>``).
    503 when the confirmation cannot be sent (nothing is saved then)."""
    mailbox = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    if destination == mailbox.address.lower():
        raise _problem("own_address", "A mailbox cannot forward to its own address.")
    rows = await _rows(session, mailbox.id)
    row = next((r for r in rows if r.destination == destination), None)
    if row is not None and row.status == ForwardingStatus.ACTIVE:
        await session.commit()
        return row
    now = utc.now()
    if row is None:
        if len(rows) >= MAX_DESTINATIONS:
            raise _problem(
                "too_many_destinations", f"A mailbox has at most {MAX_DESTINATIONS} forwarding destinations."
            )
        row = MailboxForwarding(
            id=new_id("fwd"), mailbox_id=mailbox.id, destination=destination, created_at=now, updated_at=now
        )
    token = secrets.token_urlsafe(32)
    row.token_digest = token_digest(token)
    row.token_expires_at = now + CONFIRMATION_TTL
    row.verification_sent_at = now
    row.updated_at = now
    session.add(row)
    await session.flush()
    link = base_url.rstrip("/") + "/v1" + CONFIRM_PATH + token
    await _send_confirmation(svc, session, mailbox.address, destination, link, now + CONFIRMATION_TTL)
    await session.commit()
    return row


async def confirm(svc: Services, session: AsyncSession, token: str) -> MailboxForwarding:
    """Make the destination whose pending link carries ``token`` active and install the script
    (committed). 404 for an unknown, used or expired token, or a mailbox that is gone."""
    unknown = NotFound("This confirmation link is unknown, already used or expired.")
    if not 20 <= len(token) <= 128:
        raise unknown
    digest = token_digest(token)
    found = (await session.exec(select(MailboxForwarding).where(col(MailboxForwarding.token_digest) == digest))).first()
    if found is None:
        raise unknown
    owner = await session.get(Mailbox, found.mailbox_id)
    if owner is None or owner.state != MailboxState.ACTIVE:
        raise unknown
    mailbox = await mailboxes.get(session, owner.organization_id, owner.id, for_update=True)
    row = (
        await session.exec(select(MailboxForwarding).where(col(MailboxForwarding.token_digest) == digest))
    ).first()  # again, under the lock: a concurrent confirmation or removal may have won
    now = utc.now()
    if row is None or row.token_expires_at is None or row.token_expires_at <= now:
        raise unknown
    row.status = ForwardingStatus.ACTIVE.value
    row.token_digest = None
    row.token_expires_at = None
    row.verified_at = now
    row.updated_at = now
    session.add(row)
    active = [r.destination for r in await _rows(session, mailbox.id) if r.status == ForwardingStatus.ACTIVE]
    await delivery.update_and_install(svc, session, mailbox, forward_to=active)
    return row


async def delete(
    svc: Services, session: AsyncSession, organization_id: str, mailbox_id: str, forwarding_id: str
) -> None:
    """Remove one destination (committed); an active one leaves the script first. 404 for an id
    that is not one of this mailbox's."""
    mailbox = await mailboxes.get(session, organization_id, mailbox_id, for_update=True)
    rows = await _rows(session, mailbox.id)
    row = next((r for r in rows if r.id == forwarding_id), None)
    if row is None:
        raise NotFound(f"No forwarding destination with id {forwarding_id!r}.")
    was_active = row.status == ForwardingStatus.ACTIVE
    await session.delete(row)
    if was_active:
        active = [r.destination for r in rows if r.status == ForwardingStatus.ACTIVE and r.id != row.id]
        await delivery.update_and_install(svc, session, mailbox, forward_to=active)
    else:
        await session.commit()


def confirmation_message(address: str, destination: str, link: str, expires: str) -> bytes:
    """The confirmation mail (RFC 5322, CRLF): from the mailbox, to the destination, the link in
    plain text; ``Auto-Submitted: auto-generated`` (RFC 3834) so no auto-reply answers it."""
    msg = EmailMessage()
    msg["From"] = address
    msg["To"] = destination
    msg["Subject"] = f"Confirm forwarding from {address}"
    msg["Date"] = format_datetime(utc.now())
    msg["Message-ID"] = make_msgid(domain=address.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(
        f"{address} asks to forward its mail to {destination}.\n\n"
        f"To accept, open this link and confirm (it works once, until {expires}):\n\n{link}\n\n"
        "If you did not expect this, ignore this message: nothing will be forwarded to you.\n"
    )
    return bytes(msg.as_bytes(policy=msg.policy.clone(linesep="\r\n")))


async def _send_confirmation(
    svc: Services, session: AsyncSession, address: str, destination: str, link: str, expires_at: datetime
) -> None:
    """Queue the confirmation mail for ``destination`` on the one outgoing path
    (:func:`shipmail.messages.outbound.enqueue`, in ``session``'s transaction: it leaves when the
    forwarding row is committed, and only then): a destination that is one of our mailboxes gets
    it over LMTP through the inbound gateway, any other through ``SHIPMAIL_SMTP_RELAY`` or the
    outbox, retried on temporary failures. Envelope sender: the null sender (no bounce loops)."""
    data = confirmation_message(address, destination, link, f"{expires_at:%Y-%m-%d %H:%M} UTC")
    await outbound.enqueue(session, outbound.Spooled(sender="", recipients=[destination], data=data))
