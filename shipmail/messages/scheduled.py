"""Scheduled sends: ``scheduled_at`` on ``POST /v1/messages`` and the replies, and
``/v1/scheduled-messages`` (list, get, update, cancel). Source: Shipmail ``sendMessage``
(``scheduled_at``), ``listScheduledMessages``, ``getScheduledMessage``,
``updateScheduledMessage``, ``cancelScheduledMessage``.

How it works
    A send whose ``scheduled_at`` is more than 1 s ahead (at most 365 days) is checked, counted
    against the mailbox's send limits and built exactly as an immediate one; its ``messages`` row
    is committed ``scheduled`` together with a durable job (:mod:`shipmail.jobs`, kind
    :data:`~shipmail.messages.service.DISPATCH_KIND`, ``run_at`` = the time), and the message is
    stored in the mailbox's Drafts (``$draft``; ``draft_email_id``), where an IMAP client sees it
    as a draft. Staged attachments are in that draft from then on.

    At its time a worker runs :func:`dispatch_job`: it claims the row (``scheduled`` → ``queued``
    in one conditional UPDATE, so a concurrent cancel or update and the dispatch never both win),
    then submits the stored draft with ``EmailSubmission/set`` (moved to Sent, ``$draft``
    cleared; a reply's original gets ``$answered``) and wakes the outgoing queue; from there it
    is an ordinary queued message. Exactly once: a dispatch run again after a crash looks at the
    draft first (still in Drafts: not submitted; in Sent: it was) and never submits twice. The
    worker polls every 0.5 s, so a message leaves well within 5 s of its time, and a restart in
    between only delays it until the service runs again.

    Update and cancel work while the row is ``scheduled`` (before dispatch begins): 409
    afterwards. An update builds and stores the new draft first, then swaps it in with a
    conditional UPDATE (the old draft is destroyed; if dispatch won, the new one is); cancel
    marks the row ``cancelled``, removes the job, gives the send back to the mailbox's counters
    and destroys the draft.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from jmapc.methods import EmailGet
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import jobs
from shipmail.http.errors import Conflict, NotFound, ServiceUnavailable
from shipmail.jmap import email as jemail
from shipmail.jmap import ids
from shipmail.jmap.request import Request
from shipmail.jobs import Handler, Job
from shipmail.mailboxes import sending
from shipmail.mailboxes.accounts import system_folders
from shipmail.mailboxes.models import Mailbox, MailboxState
from shipmail.messages import compose, outbound, staged
from shipmail.messages import service as messages
from shipmail.messages.models import MessageStatus, OutboundMessage
from shipmail.messages.schemas import (
    ListScheduledMessagesQuery,
    ScheduledMessage,
    ScheduledMessageList,
    UpdateScheduledMessageRequest,
)
from shipmail.runtime import Services
from shipmail.sandbox.service import Party, Problems
from shipmail.utc import now as utcnow

logger = logging.getLogger("shipmail.messages.scheduled")

#: Longest wait of a dispatch that found its message not yet due (it looks again then).
RECHECK_SECONDS = 30.0
#: A message whose draft was never stored (its request died) fails this long after creation.
DRAFT_GRACE = timedelta(minutes=2)

SCHEDULED = MessageStatus.SCHEDULED.value


def render(row: OutboundMessage, mailbox: Mailbox) -> ScheduledMessage:
    assert row.scheduled_at is not None
    return ScheduledMessage.model_validate(
        {
            "id": row.id,
            "scheduled_message_id": row.id,
            "mailbox_id": row.mailbox_id,
            "mailbox_address": mailbox.address,
            "from_address": row.from_address,
            "identity_id": row.identity_id or row.from_address,
            "subject": row.subject or "",
            "to": row.to_addresses,
            "cc": row.cc_addresses,
            "bcc": row.bcc_addresses,
            "attachments": row.attachments or [],
            "scheduled_at": row.scheduled_at,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "last_error": row.last_error,
            "draft_email_id": ids.to_wire(ids.EMAIL, row.email_id) if row.email_id else None,
            "from_name": mailbox.display_name,
            "text": row.body_text,
            "html": row.body_html,
            "in_reply_to": row.in_reply_to,
            "references": row.references or [],
        }
    )


# ------------------------------------------------------------------------------------ reads


async def _tracked(session: AsyncSession, organization_id: str, message_id: str) -> OutboundMessage:
    """The organisation's message ``message_id`` that was scheduled (any status now); 404."""
    row = await messages.get(session, organization_id, message_id)
    if row.scheduled_at is None:
        raise NotFound(f"No scheduled message with id {message_id!r}.")
    return row


async def _mailbox_of(session: AsyncSession, row: OutboundMessage) -> Mailbox:
    mailbox = await session.get(Mailbox, row.mailbox_id)
    if mailbox is None or mailbox.organization_id != row.organization_id:
        raise NotFound(f"No scheduled message with id {row.id!r}.")
    return mailbox


async def get(session: AsyncSession, organization_id: str, message_id: str) -> ScheduledMessage:
    """A message still waiting for its time; 404 for any other (sent, cancelled, unknown)."""
    row = await _tracked(session, organization_id, message_id)
    if row.status != SCHEDULED:
        raise NotFound(f"No scheduled message with id {message_id!r} (it was sent or cancelled).")
    return render(row, await _mailbox_of(session, row))


async def list_scheduled(
    session: AsyncSession, organization_id: str, query: ListScheduledMessagesQuery
) -> ScheduledMessageList:
    """The organisation's messages waiting for their time, soonest first; ``search`` matches the
    subject or a recipient address/name (case-insensitive). ``total`` counts every match."""
    rows = (
        await session.exec(
            select(OutboundMessage)
            .where(OutboundMessage.organization_id == organization_id)
            .where(OutboundMessage.status == SCHEDULED)
            .order_by(col(OutboundMessage.scheduled_at), col(OutboundMessage.id))
        )
    ).all()
    if query.search:
        needle = query.search.lower()

        def matches(r: OutboundMessage) -> bool:
            fields = [r.subject or ""]
            for party in [*r.to_addresses, *r.cc_addresses, *r.bcc_addresses]:
                fields += [str(party.get("address") or ""), str(party.get("name") or "")]
            return any(needle in f.lower() for f in fields)

        rows = [r for r in rows if matches(r)]
    page = rows[: query.limit]
    boxes = {
        m.id: m
        for m in (
            await session.exec(select(Mailbox).where(col(Mailbox.id).in_(sorted({r.mailbox_id for r in page}))))
        ).all()
    }
    return ScheduledMessageList(
        data=[render(r, boxes[r.mailbox_id]) for r in page if r.mailbox_id in boxes], total=len(rows)
    )


# ------------------------------------------------------------------------------------ changes


def _not_pending(row: OutboundMessage) -> Conflict:
    return Conflict(f"The message {row.id} is {row.status}: only a scheduled message not yet dispatched can change.")


async def cancel(svc: Services, session: AsyncSession, organization_id: str, message_id: str) -> None:
    """Cancel a scheduled message before dispatch begins: ``status`` ``cancelled``, its draft
    destroyed, its send given back to the mailbox's counters. 409 once dispatch began (or it was
    cancelled); 404 unknown."""
    row = await _tracked(session, organization_id, message_id)
    mailbox = await _mailbox_of(session, row)
    now = utcnow()
    won = await session.exec(
        sa.update(OutboundMessage)
        .where(col(OutboundMessage.id) == row.id, col(OutboundMessage.status) == SCHEDULED)
        .values(status=MessageStatus.CANCELLED.value, updated_at=now)
    )
    if won.rowcount != 1:
        await session.rollback()
        await session.refresh(row)
        raise _not_pending(row)
    await jobs.cancel(session, messages.dispatch_key(row.id))  # a running dispatch sees "cancelled"
    await session.refresh(mailbox, with_for_update=True)  # in the write transaction: current counters
    sending.give_back(mailbox, row.created_at)
    session.add(mailbox)
    email_id = row.email_id
    await session.commit()
    if email_id:
        await messages.destroy(svc, mailbox, email_id)


async def update(
    svc: Services,
    session: AsyncSession,
    organization_id: str,
    key_id: str | None,
    message_id: str,
    body: UpdateScheduledMessageRequest,
) -> ScheduledMessage:
    """Replace recipients, subject, bodies (kept when neither is given), threading headers,
    attachments (``staged_attachment_ids``; kept when absent) and the time. A time now or past
    sends it at once. 409 once dispatch began; 404 unknown; 422 as for ``sendMessage``."""
    row = await _tracked(session, organization_id, message_id)
    if row.status != SCHEDULED:
        raise _not_pending(row)
    mailbox = await _mailbox_of(session, row)
    problems = Problems("message")
    to = compose.parse_recipients(problems, "to", body.to)
    cc = compose.parse_recipients(problems, "cc", body.cc)
    bcc = compose.parse_recipients(problems, "bcc", body.bcc)
    compose.check_recipient_count(problems, to, cc, bcc)
    compose.check_text(problems, "subject", body.subject)
    text, html = (body.text, body.html) if (body.text, body.html) != (None, None) else (row.body_text, row.body_html)
    compose.check_bodies(problems, text, html)
    problems.raise_if_any()
    when = messages.due_time(body.scheduled_at) or utcnow()
    folders = await system_folders(svc, session, mailbox)
    if body.staged_attachment_ids is None:
        attachments = await _draft_attachments(svc, mailbox, row)
    else:
        attachments = await staged.resolve(svc, session, mailbox, key_id, body.staged_attachment_ids)
    messages.check_attachment_totals(attachments)
    references = list(body.references) if body.references is not None else list(row.references or [])
    in_reply_to = body.in_reply_to if body.in_reply_to is not None else row.in_reply_to
    draft = compose.Draft(
        sender=Party(address=row.from_address, name=mailbox.display_name or None),
        to=to,
        cc=cc,
        bcc=bcc,
        subject=body.subject,
        text=text,
        html=html,
        attachments=attachments,
        message_id=row.rfc_message_id,
        in_reply_to=in_reply_to,
        references=references,
        headers=[(h["name"], h["value"]) for h in row.headers],
    )
    data = compose.build(draft, date=when)
    old_email_id = row.email_id
    new_email_id, thread_id = await messages.import_draft(svc, mailbox, folders, data)
    now = utcnow()
    won = await session.exec(
        sa.update(OutboundMessage)
        .where(
            col(OutboundMessage.id) == row.id,
            col(OutboundMessage.status) == SCHEDULED,
            col(OutboundMessage.email_id) == old_email_id,
        )
        .values(
            email_id=new_email_id,
            thread_id=thread_id,
            subject=body.subject,
            to_addresses=[_party(p) for p in to],
            cc_addresses=[_party(p) for p in cc],
            bcc_addresses=[_party(p) for p in bcc],
            attachments=messages.attachment_json(attachments),
            body_text=text,
            body_html=html,
            in_reply_to=in_reply_to,
            references=references,
            scheduled_at=when,
            updated_at=now,
        )
    )
    if won.rowcount != 1:
        await session.rollback()
        if new_email_id != old_email_id:
            await messages.destroy(svc, mailbox, new_email_id)
        await session.refresh(row)
        raise _not_pending(row)
    await jobs.enqueue(
        session, messages.DISPATCH_KIND, {"id": row.id}, run_at=when, key=messages.dispatch_key(row.id), replace=True
    )
    await session.commit()
    if old_email_id and old_email_id != new_email_id:
        await messages.destroy(svc, mailbox, old_email_id)
    await session.refresh(row)
    return render(row, mailbox)


def _party(p: Party) -> dict[str, Any]:
    return {"address": p.address, "name": p.name}


async def _draft_attachments(svc: Services, mailbox: Mailbox, row: OutboundMessage) -> list[compose.Attachment]:
    """The attachments of the stored draft of ``row``, read back from the mail server."""
    if not row.attachments or not row.email_id:
        return []
    request = Request()
    call = request.add(EmailGet(ids=[row.email_id], properties=["attachments"]))
    listed = (await svc.jmap.call(mailbox.address, request)).get(call, what="message").get("list") or []
    if not listed:
        raise Conflict(f"The draft of {row.id} is gone from the mailbox; give staged_attachment_ids again.")
    out: list[compose.Attachment] = []
    for part, meta in zip(listed[0].get("attachments") or [], row.attachments, strict=False):
        kind = str(meta.get("content_type") or part.get("type") or "application/octet-stream")
        response = await svc.jmap.open_blob(mailbox.address, str(part["blobId"]), content_type=kind)
        try:
            if response.status_code != 200:
                raise ServiceUnavailable(f"The mail server answered {response.status_code} for an attachment.")
            data = await response.aread()
        finally:
            await response.aclose()
        out.append(
            compose.Attachment(
                filename=str(meta.get("filename") or part.get("name") or ""), content_type=kind, data=data
            )
        )
    return out


# ------------------------------------------------------------------------------------ dispatch


async def dispatch_job(job: Job, svc: Services) -> None:
    """Handler of :data:`~shipmail.messages.service.DISPATCH_KIND`: send the scheduled message
    ``job.payload["id"]`` if it is due and not cancelled (see the module docstring)."""
    message_id = str(job.payload.get("id") or "")
    async with svc.db.session() as session:
        row = await session.get(OutboundMessage, message_id)
        if row is None or row.status not in (SCHEDULED, MessageStatus.QUEUED.value):
            return  # cancelled, already sent or failed
        mailbox = await session.get(Mailbox, row.mailbox_id)
        if mailbox is None or mailbox.state != MailboxState.ACTIVE.value:
            await _fail(session, row, "the sending mailbox no longer exists")
            return
        now = utcnow()
        if row.status == SCHEDULED:
            assert row.scheduled_at is not None
            if row.scheduled_at > now:
                raise jobs.Retry(after=min(RECHECK_SECONDS, (row.scheduled_at - now).total_seconds()))
            if mailbox.suspended_at is not None:
                await _fail(session, row, "the mailbox was suspended at the scheduled time: it cannot send")
                return
            if row.email_id is None:  # its request is still storing the draft (or died doing it)
                if now - row.created_at > DRAFT_GRACE:
                    await _fail(session, row, "the scheduled message's draft was never stored")
                    return
                raise jobs.Retry(after=0.5)
            claimed = await session.exec(
                sa.update(OutboundMessage)
                .where(
                    col(OutboundMessage.id) == row.id,
                    col(OutboundMessage.status) == SCHEDULED,
                    col(OutboundMessage.scheduled_at) <= now,
                )
                .values(status=MessageStatus.QUEUED.value, updated_at=now)
            )
            await session.commit()
            if claimed.rowcount != 1:
                raise jobs.Retry(after=0.0)  # changed meanwhile: look again
            await session.refresh(row)
        await _submit_claimed(svc, session, mailbox, row, job)


async def _submit_claimed(
    svc: Services, session: AsyncSession, mailbox: Mailbox, row: OutboundMessage, job: Job
) -> None:
    """Submit the claimed message's draft unless that happened already (a re-run), then record it."""
    assert row.email_id is not None
    folders = await system_folders(svc, session, mailbox)
    request = Request()
    call = request.add(EmailGet(ids=[row.email_id], properties=["id", "mailboxIds", "threadId"]))
    listed = (await svc.jmap.call(mailbox.address, request)).get(call, what="message").get("list") or []
    if not listed:
        await _fail(session, row, "the scheduled message's draft was deleted from the mailbox")
        return
    if folders["drafts"] in jemail.mailbox_ids(listed[0]):
        recipients = list(
            dict.fromkeys(str(p["address"]) for p in [*row.to_addresses, *row.cc_addresses, *row.bcc_addresses])
        )
        try:
            await messages.submit_draft(
                svc, mailbox, folders, row.email_id, row.identity_id or row.from_address, row.from_address, recipients
            )
        except ServiceUnavailable as exc:
            row.last_error = f"dispatch: {exc.message}"[:1000]
            session.add(row)
            await session.commit()
            raise jobs.Retry(after=jobs.backoff(job.attempts, base=2.0, cap=300.0), reason=exc.message) from None
        if row.reply_email_id:
            await messages.mark_answered(svc, mailbox, row.reply_email_id)
    row.thread_id = str(listed[0].get("threadId") or row.thread_id)
    row.last_error = None
    row.body_text = row.body_html = None
    row.updated_at = utcnow()
    session.add(row)
    await outbound.wake_spool(session)
    await session.commit()


async def _fail(session: AsyncSession, row: OutboundMessage, reason: str) -> None:
    logger.warning("scheduled message %s failed: %s", row.id, reason)
    row.status = MessageStatus.FAILED.value
    row.last_error = reason
    row.updated_at = utcnow()
    session.add(row)
    await session.commit()


handlers: dict[str, Handler] = {messages.DISPATCH_KIND: dispatch_job}
