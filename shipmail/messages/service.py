"""Sending from a mailbox: ``POST /v1/messages``, the replies, ``GET /v1/messages[/{id}]``.

How a message is sent (measured facts in :mod:`shipmail.jmap.email_submission`)
    1. The request is checked (422, every problem at once): recipients (at most 50, to + cc +
       bcc), CR/LF and other control characters in names, subject and headers, bodies,
       attachments (base64, at most 20, 3 MB each and together). The sender must be one of the
       mailbox's identities (JMAP ``Identity/get``; Cyrus does not check it, so we do: 422).
       A suspended mailbox cannot send (409); one over its daily or monthly send limit answers
       429 (:mod:`shipmail.mailboxes.sending`; the count is taken in the same commit as the row
       and given back if the mail server does not take the message).
    2. The message is built with Python's ``email`` package (:mod:`shipmail.messages.compose`),
       ``Message-ID`` on the sender's domain, never a ``Bcc`` header.
    3. The ``messages`` row is committed ``queued`` (so the outgoing queue can link the spooled
       message to it by its ``Message-ID``).
    4. ONE JMAP request: ``Email/import`` into Drafts (``$draft``, ``$seen``), then
       ``EmailSubmission/set`` with the envelope (every recipient, Bcc included) and
       ``onSuccessUpdateEmail`` moving it to Sent and clearing ``$draft``. Cyrus hands the
       message to its ``sendmail`` program, which spools it for the one outgoing path
       (:mod:`shipmail.messages.outbound`); the spool is looked at right after the commit.
       A reply then gets ``$answered`` on the message replied to (a second request, only after
       the submission succeeded).
    5. The row records the Sent copy's email and thread ids. If the upload, import or
       submission fails, the row is deleted and the imported draft destroyed: nothing is left.

Staged attachments (``staged_attachment_ids``) are read back from the mailbox's account and
checked against their SHA-256 in step 1 (:mod:`shipmail.messages.staged`). A ``scheduled_at``
more than :data:`NEAR_IMMEDIATE` ahead (at most :data:`MAX_SCHEDULE_AHEAD`) stops after the
import into Drafts: the row is committed ``scheduled`` with its dispatch job in step 3, and
:mod:`shipmail.messages.scheduled` submits the stored draft at its time. ``client_reference``
is unique within an organisation (409, also enforced by a unique index).

A mailbox over its storage quota (``storage_quota_bytes``, enforced by the mail server) cannot
keep the copy a send files in Drafts and Sent: Cyrus refuses the ``Email/import`` with
``overQuota`` (RFC 8620 section 5.3; measured: also when the copy would cross the quota) and the
send answers 422 ``quota_exceeded`` (:class:`MailboxOverQuota`), with nothing sent or counted.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from jmapc.methods import EmailGet, EmailSet, IdentityGet
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import ids as public_ids
from shipmail import jobs
from shipmail.http.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed, detail
from shipmail.http.listing import cursor_page
from shipmail.inbox import service as inbox
from shipmail.inbox.schemas import InboxEmailHeader, InboxFullMessage
from shipmail.jmap import email as jemail
from shipmail.jmap import identity as jidentity
from shipmail.jmap import ids
from shipmail.jmap.email_submission import EmailSubmissionSet
from shipmail.jmap.errors import from_jmap
from shipmail.jmap.request import Request
from shipmail.mailboxes import sending
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.accounts import system_folders
from shipmail.mailboxes.models import Mailbox, MailboxState
from shipmail.messages import compose, outbound, staged
from shipmail.messages.models import MessageStatus, OutboundMessage
from shipmail.messages.schemas import (
    MAX_ATTACHMENTS,
    MAX_STAGED_BYTES,
    ListMessagesQuery,
    Message,
    ReplyToThreadRequest,
    SendMessageRequest,
)
from shipmail.runtime import Services
from shipmail.sandbox.service import Party, Problems, check_custom_headers, parse_party
from shipmail.utc import now as utcnow

logger = logging.getLogger("shipmail.messages.service")


class MailboxOverQuota(ValidationFailed):
    """422 ``quota_exceeded``: the sending mailbox has no room for the copy the send keeps (its
    storage quota, the mail server's ``overQuota``). Detail ``from`` / ``mailbox_over_quota``."""

    error_type = "quota_exceeded"


def _over_quota(row: Mailbox) -> MailboxOverQuota:
    return MailboxOverQuota(
        f"The mailbox {row.address} is over its storage quota: the message and its copy in Sent do not fit. "
        "Delete mail or raise its storage_quota_bytes, then send again.",
        details=[detail("from", "mailbox_over_quota", "the sending mailbox is over its storage quota")],
    )


PREFIX = "msg"
#: The job that sends a scheduled message at its time (:mod:`shipmail.messages.scheduled`), named
#: :func:`dispatch_key`; payload ``{"id": <msg_...>}``.
DISPATCH_KIND = "messages.dispatch_scheduled"
#: A ``scheduled_at`` at most this far ahead is sent at once (the reference: "past or
#: near-immediate times are sent immediately"); the farthest one allowed.
NEAR_IMMEDIATE = timedelta(seconds=1)
MAX_SCHEDULE_AHEAD = timedelta(days=365)
_RE_PREFIX = re.compile(r"^\s*(re|aw|sv)\s*:", re.IGNORECASE)


# ----------------------------------------------------------------------------------- rendering


def render(row: OutboundMessage) -> Message:
    """The wire ``Message`` of a row."""
    return Message.model_validate(
        {
            "id": row.id,
            "mailbox_id": row.mailbox_id,
            "thread_id": ids.to_wire(ids.THREAD, row.thread_id) if row.thread_id else None,
            "conversation_id": ids.to_wire(ids.THREAD, row.thread_id) if row.thread_id else None,
            "email_id": ids.to_wire(ids.EMAIL, row.email_id) if row.email_id else None,
            "source_rfc_message_id": row.rfc_message_id,
            "client_reference": row.client_reference,
            "metadata": row.meta or {},
            "headers": row.headers,
            "subject": row.subject,
            "from_address": row.from_address,
            "to_addresses": row.to_addresses,
            "cc_addresses": row.cc_addresses,
            "bcc_addresses": row.bcc_addresses,
            "attachments": row.attachments,
            "source": row.source,
            "status": row.status,
            "last_error": row.last_error,
            "scheduled_at": row.scheduled_at,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )


def dispatch_key(message_id: str) -> str:
    return f"{DISPATCH_KIND}:{message_id}"


def due_time(value: datetime | None, field_name: str = "scheduled_at") -> datetime | None:
    """When a message with ``scheduled_at`` ``value`` is to be sent: None for now (absent, past or
    within :data:`NEAR_IMMEDIATE`), else the time in UTC (a time without offset is UTC). 422 more
    than :data:`MAX_SCHEDULE_AHEAD` ahead."""
    if value is None:
        return None
    try:
        when = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-10:00 is past year 9999 in UTC
        when = datetime.max.replace(tzinfo=UTC) if value.year > 1 else datetime.min.replace(tzinfo=UTC)
    now = utcnow()
    if when > now + MAX_SCHEDULE_AHEAD:
        raise ValidationFailed(
            "scheduled_at is too far ahead.",
            details=[detail(field_name, "too_far_ahead", "at most 365 days ahead")],
        )
    return when if when > now + NEAR_IMMEDIATE else None


async def check_client_reference(session: AsyncSession, organization_id: str, reference: str | None) -> None:
    """409 when a message of the organisation already has ``client_reference`` ``reference``
    (the reference's ``ClientReference``: unique within an organisation)."""
    if reference is None:
        return
    taken = (
        await session.exec(
            select(OutboundMessage.id)
            .where(OutboundMessage.organization_id == organization_id)
            .where(OutboundMessage.client_reference == reference)
        )
    ).first()
    if taken is not None:
        raise _reference_taken(reference)


def _reference_taken(reference: str) -> Conflict:
    return Conflict(
        f"A message with client_reference {reference!r} already exists in this organisation.",
        details=[detail("client_reference", "duplicate", "client_reference is unique within an organisation")],
    )


def check_attachment_totals(attachments: list[compose.Attachment]) -> None:
    """422 for more than 20 attachments (base64 and staged) or more than 25 MiB together."""
    problems = Problems("message")
    if len(attachments) > MAX_ATTACHMENTS:
        problems.add("staged_attachment_ids", "too_many", f"at most {MAX_ATTACHMENTS} attachments in all")
    if sum(len(a.data) for a in attachments) > MAX_STAGED_BYTES:
        problems.add("staged_attachment_ids", "too_large", f"attachments are at most {MAX_STAGED_BYTES} bytes together")
    problems.raise_if_any()


def _party_json(party: Party) -> dict[str, Any]:
    return {"address": party.address, "name": party.name}


# ----------------------------------------------------------------------------------- reads


async def get(session: AsyncSession, organization_id: str, message_id: str) -> OutboundMessage:
    """The organisation's message ``message_id``; 404 otherwise."""
    row = await session.get(OutboundMessage, message_id) if public_ids.has_prefix(message_id, PREFIX) else None
    if row is None or row.organization_id != organization_id:
        raise NotFound(f"No message with id {message_id!r}.")
    return row


async def list_page(
    svc: Services, session: AsyncSession, organization_id: str, q: ListMessagesQuery
) -> tuple[list[OutboundMessage], str | None, bool]:
    """A page of the organisation's messages in creation order (optionally of one mailbox, or
    with one ``client_reference``)."""
    where = [col(OutboundMessage.organization_id) == organization_id]
    if q.mailbox_id is not None:
        where.append(col(OutboundMessage.mailbox_id) == q.mailbox_id)
    if q.client_reference is not None:
        where.append(col(OutboundMessage.client_reference) == q.client_reference)
    return await cursor_page(
        session,
        svc.cursors,
        OutboundMessage,
        kind="messages",
        binding={"o": organization_id, "m": q.mailbox_id, "c": q.client_reference},
        where=where,
        cursor=q.cursor,
        limit=q.limit,
    )


async def record_inbound(
    session: AsyncSession, row: Mailbox, delivered: InboxFullMessage, headers: list[dict[str, str]]
) -> Message:
    """Record a message delivered into ``row`` by the sandbox (``source`` ``inbound``, ``status``
    ``delivered``) from its stored copy ``delivered``, committed; its ``Message``. ``headers``
    are the custom headers it was delivered with."""

    def parties(raw: list[InboxEmailHeader] | None) -> list[dict[str, Any]]:
        return [{"address": a.email, "name": a.name} for a in raw or [] if a.email]

    now = utcnow()
    senders = parties(delivered.from_)
    message = OutboundMessage(
        id=public_ids.new_id(PREFIX),
        organization_id=row.organization_id,
        mailbox_id=row.id,
        thread_id=ids.from_wire(ids.THREAD, delivered.thread_id),
        email_id=ids.from_wire(ids.EMAIL, delivered.id),
        rfc_message_id=f"<{delivered.message_id[0]}>" if delivered.message_id else "",
        headers=headers,
        subject=delivered.subject,
        from_address=senders[0]["address"] if senders else "",
        to_addresses=parties(delivered.to),
        cc_addresses=parties(delivered.cc),
        bcc_addresses=[],
        attachments=None,
        source="inbound",
        status=MessageStatus.DELIVERED.value,
        created_at=now,
        updated_at=now,
    )
    session.add(message)
    await session.commit()
    await session.refresh(message)
    return render(message)


# ----------------------------------------------------------------------------------- sending


async def _sender_mailbox(session: AsyncSession, organization_id: str, body: SendMessageRequest) -> Mailbox:
    if body.mailbox_id is not None:
        return await mailboxes.get(session, organization_id, body.mailbox_id)
    if body.from_ is None:
        raise ValidationFailed(
            "Give from or mailbox_id.", details=[detail("from", "missing", "from or mailbox_id is required")]
        )
    address = body.from_.strip().lower()
    row = (
        await session.exec(
            select(Mailbox)
            .where(Mailbox.organization_id == organization_id)
            .where(Mailbox.address == address)
            .where(Mailbox.state == MailboxState.ACTIVE.value)
        )
    ).first()
    if row is None:
        raise ValidationFailed(
            f"{body.from_!r} is not a mailbox of this organisation.",
            details=[detail("from", "unknown_sender", "not the address of a mailbox of this organisation")],
        )
    return row


async def _sender(svc: Services, row: Mailbox, wanted: str | None) -> tuple[Party, str]:
    """The From party and the JMAP identity id: the mailbox identity whose email is ``wanted``
    (the mailbox's address when None), named with the mailbox's display name; 422 when
    ``wanted`` is not one of its identities."""
    request = Request()
    call = request.add(IdentityGet(ids=None))
    listed = (await svc.jmap.call(row.address, request)).get(call, what="identity listing").get("list") or []
    identities = [jidentity.Identity.of(raw) for raw in listed]
    emails = [(i.email or row.address).lower() for i in identities] or [row.address]
    email = (wanted or row.address).strip().lower()
    if email not in emails:
        raise ValidationFailed(
            f"{wanted!r} is not an identity of mailbox {row.id}.",
            details=[detail("from", "not_an_identity", "the sender must be one of the mailbox's identities")],
        )
    identity = next((i for i in identities if (i.email or row.address).lower() == email), None)
    name = row.display_name or (identity.name if identity else "") or None
    return Party(address=email, name=name), identity.id if identity else email


@dataclass
class _Reply:
    """What a reply takes from the message it answers."""

    email_id: str  # JMAP id, gets $answered
    in_reply_to: str
    references: list[str]
    subject: str


def _problems_of(body: SendMessageRequest | ReplyToThreadRequest, problems: Problems) -> dict[str, Any]:
    to = compose.parse_recipients(problems, "to", body.to)
    cc = compose.parse_recipients(problems, "cc", body.cc)
    bcc = compose.parse_recipients(problems, "bcc", getattr(body, "bcc", None))
    compose.check_recipient_count(problems, to, cc, bcc)
    compose.check_bodies(problems, body.text, body.html)
    headers = check_custom_headers(problems, body.headers or [])
    return {"to": to, "cc": cc, "bcc": bcc, "headers": headers}


async def send(
    svc: Services, session: AsyncSession, organization_id: str, body: SendMessageRequest, *, key_id: str | None = None
) -> Message:
    """Send ``body`` (see the module docstring); the ``Message`` (201). ``key_id``: the calling
    API key (its staged attachments only)."""
    row = await _sender_mailbox(session, organization_id, body)
    problems = Problems("message")
    parts = _problems_of(body, problems)
    reply_to = parse_party(problems, "reply_to", body.reply_to) if body.reply_to is not None else None
    compose.check_text(problems, "subject", body.subject)
    attachments = compose.decode_attachments(problems, body.attachments)
    problems.raise_if_any()
    due_time(body.scheduled_at)  # 422 before any mail server work
    await check_client_reference(session, organization_id, body.client_reference)
    attachments += await staged.resolve(svc, session, row, key_id, body.staged_attachment_ids or [])
    check_attachment_totals(attachments)
    references = list(body.references or ([body.in_reply_to] if body.in_reply_to else []))
    return await _submit(
        svc,
        session,
        row,
        body,
        sender_address=body.from_,
        parts=parts,
        reply_to=reply_to,
        subject=body.subject,
        attachments=attachments,
        in_reply_to=body.in_reply_to,
        references=references,
        reply=None,
    )


async def reply(
    svc: Services, session: AsyncSession, row: Mailbox, email_id: str, body: ReplyToThreadRequest
) -> Message:
    """Reply from ``row`` to its message ``email_id`` (JMAP id): ``In-Reply-To`` its Message-ID,
    ``References`` its references and Message-ID, subject ``Re: <its subject>``; it gets
    ``$answered`` once the reply is submitted. 404 for an unknown message."""
    problems = Problems("reply")
    parts = _problems_of(body, problems)
    problems.raise_if_any()
    due_time(body.scheduled_at)
    await check_client_reference(session, row.organization_id, body.client_reference)
    original = await _original(svc, row, email_id)
    return await _submit(
        svc,
        session,
        row,
        body,
        sender_address=None,
        parts=parts,
        reply_to=None,
        subject=original.subject,
        attachments=[],
        in_reply_to=original.in_reply_to,
        references=original.references,
        reply=original,
    )


async def _original(svc: Services, row: Mailbox, email_id: str) -> _Reply:
    request = Request()
    call = request.add(EmailGet(ids=[email_id], properties=["id", "messageId", "references", "subject"]))
    listed = (await svc.jmap.call(row.address, request)).get(call, what="message").get("list") or []
    if not listed:
        raise NotFound(f"No message with id {ids.to_wire(ids.EMAIL, email_id)!r}.")
    e = listed[0]
    in_reply_to, references, subject = reply_headers(e)
    if in_reply_to is None:
        raise ValidationFailed(
            "The message has no Message-ID to reply to.",
            details=[detail("message_id", "no_message_id", "the message has no Message-ID")],
        )
    return _Reply(email_id=str(e["id"]), in_reply_to=in_reply_to, references=references, subject=subject)


def reply_headers(original: dict[str, Any]) -> tuple[str | None, list[str], str]:
    """``In-Reply-To``, ``References`` and subject of a reply to the JMAP Email ``original``
    (``messageId``, ``references``, ``subject``; RFC 5322 section 3.6.4): its first Message-ID
    (None when it has none), its references then that Message-ID, ``Re: <subject>`` unless the
    subject already starts with a reply prefix."""
    message_ids = [f"<{m}>" for m in original.get("messageId") or []]
    refs = [f"<{m}>" for m in original.get("references") or []]
    subject = str(original.get("subject") or "")
    if not _RE_PREFIX.match(subject):
        subject = f"Re: {subject}" if subject else "Re:"
    if not message_ids:
        return None, refs, subject
    return message_ids[0], [*[r for r in refs if r != message_ids[0]], message_ids[0]], subject


async def latest_inbound(svc: Services, session: AsyncSession, row: Mailbox, thread_id: str) -> str:
    """The JMAP id of the newest inbound message of thread ``thread_id`` (not a draft, not in
    Sent, not from the mailbox's own addresses: :mod:`shipmail.inbox.replystate`), or the newest
    message when none is inbound; 404 for an unknown thread."""
    state = await inbox.thread_state(svc, session, row, thread_id)
    c = state.classified
    newest = c.inbound[-1] if c.inbound else (c.messages or c.members)[-1]
    return str(newest["id"])


async def _submit(
    svc: Services,
    session: AsyncSession,
    row: Mailbox,
    body: SendMessageRequest | ReplyToThreadRequest,
    *,
    sender_address: str | None,
    parts: dict[str, Any],
    reply_to: Party | None,
    subject: str,
    attachments: list[compose.Attachment],
    in_reply_to: str | None,
    references: list[str],
    reply: _Reply | None,
) -> Message:
    if row.suspended_at is not None:
        raise Conflict("The mailbox is suspended: it cannot send until it is resumed.")
    when = due_time(body.scheduled_at)
    sender, identity_id = await _sender(svc, row, sender_address)
    domain = sender.address.rpartition("@")[2]
    message_id = public_ids.new_id(PREFIX)
    rfc_message_id = body.source_rfc_message_id or compose.new_message_id(message_id, domain)
    if body.source_rfc_message_id and body.source_rfc_message_id[1:-1].rpartition("@")[2].lower() != domain.lower():
        raise ValidationFailed(
            "source_rfc_message_id must be on the sender's domain.",
            details=[detail("source_rfc_message_id", "wrong_domain", "its domain must be the sender's")],
        )
    draft = compose.Draft(
        sender=sender,
        to=parts["to"],
        cc=parts["cc"],
        bcc=parts["bcc"],
        reply_to=reply_to,
        subject=subject,
        text=body.text,
        html=body.html,
        attachments=attachments,
        message_id=rfc_message_id,
        in_reply_to=in_reply_to,
        references=references,
        headers=parts["headers"],
    )
    now = utcnow()
    data = compose.build(draft, date=when or now)
    folders = await system_folders(svc, session, row)

    message = OutboundMessage(
        id=message_id,
        organization_id=row.organization_id,
        mailbox_id=row.id,
        rfc_message_id=rfc_message_id,
        source_rfc_message_id=body.source_rfc_message_id,
        client_reference=body.client_reference,
        meta=dict(body.metadata) if body.metadata is not None else None,
        headers=[{"name": n, "value": v} for n, v in parts["headers"]],
        subject=subject,
        from_address=sender.address,
        to_addresses=[_party_json(p) for p in draft.to],
        cc_addresses=[_party_json(p) for p in draft.cc],
        bcc_addresses=[_party_json(p) for p in draft.bcc],
        attachments=attachment_json(attachments),
        status=(MessageStatus.SCHEDULED if when else MessageStatus.QUEUED).value,
        scheduled_at=when,
        identity_id=identity_id,
        reply_email_id=reply.email_id if reply is not None else None,
        body_text=body.text if when else None,
        body_html=body.html if when else None,
        in_reply_to=in_reply_to if when else None,
        references=references if when else None,
        created_at=now,
        updated_at=now,
    )
    locked = await mailboxes.get(session, row.organization_id, row.id, for_update=True)
    sending.take(locked, svc.settings, now)  # 429 over the daily or monthly limit
    session.add(locked)
    session.add(message)
    if when is not None:  # in the same commit as the row: a crash right after still sends it
        await jobs.enqueue(session, DISPATCH_KIND, {"id": message_id}, run_at=when, key=dispatch_key(message_id))
    try:
        await session.commit()
    except sa.exc.IntegrityError:
        await session.rollback()
        if body.client_reference is not None:
            raise _reference_taken(body.client_reference) from None
        raise
    try:
        if when is None:
            email_id, thread_id = await _import_and_submit(svc, row, folders, data, draft, identity_id)
        else:
            email_id, thread_id = await import_draft(svc, row, folders, data)
    except BaseException:
        locked = await mailboxes.get(session, row.organization_id, row.id, for_update=True)
        sending.give_back(locked, now)
        session.add(locked)
        await session.delete(message)
        if when is not None:
            await jobs.cancel(session, dispatch_key(message_id))
        await session.commit()
        raise
    if reply is not None and when is None:
        await mark_answered(svc, row, reply.email_id)
    message.email_id = email_id
    message.thread_id = thread_id
    message.updated_at = utcnow()
    session.add(message)
    if when is None:
        await outbound.wake_spool(session)
    await session.commit()
    await session.refresh(message)
    return render(message)


def attachment_json(attachments: list[compose.Attachment]) -> list[dict[str, Any]] | None:
    """``messages.attachments`` of ``attachments`` (the reference's AttachmentMetadata)."""
    return [{"filename": a.filename, "size": len(a.data), "content_type": a.content_type} for a in attachments] or None


async def import_draft(
    svc: Services,
    row: Mailbox,
    folders: dict[str, str],
    data: bytes,
    *,
    keywords: tuple[str, ...] = ("$draft", "$seen"),
) -> tuple[str, str]:
    """Upload ``data`` and import it into ``row``'s Drafts (``$draft``: a message to be sent
    later); its (email id, thread id). The same bytes already there are that message."""
    blob_id = await svc.jmap.upload(row.address, data, "message/rfc822")
    request = Request()
    imported = request.add(
        jemail.EmailImport(emails={"d": jemail.import_entry(blob_id, [folders["drafts"]], list(keywords), None)})
    )
    got = (await svc.jmap.call(row.address, request)).get(imported, what="message import")
    created = (got.get("created") or {}).get("d")
    if created:
        return str(created["id"]), str(created["threadId"])
    failed = (got.get("notCreated") or {}).get("d") or {"type": "serverFail"}
    if failed.get("type") == "alreadyExists" and failed.get("existingId"):
        existing = str(failed["existingId"])
        request = Request()
        call = request.add(EmailGet(ids=[existing], properties=["id", "threadId"]))
        listed = (await svc.jmap.call(row.address, request)).get(call, what="message").get("list") or []
        if listed:
            return existing, str(listed[0]["threadId"])
    if failed.get("type") == "overQuota":
        raise _over_quota(row)
    raise from_jmap(failed, what="message import")


async def submit_draft(
    svc: Services,
    row: Mailbox,
    folders: dict[str, str],
    email_id: str,
    identity_id: str,
    sender: str,
    recipients: list[str],
) -> None:
    """Submit the stored draft ``email_id`` (RFC 8621 section 7.5, ``onSuccessUpdateEmail``
    moving it to Sent and clearing ``$draft``). ServiceUnavailable when the mail server refuses."""
    drafts, sent = folders["drafts"], folders["sent"]
    # onSuccessUpdateEmail is an implicit Email/set: without the mail capability in ``using``
    # Cyrus answers invalidArguments (measured), so it is named here.
    request = Request(capabilities=("urn:ietf:params:jmap:mail",))
    submitted = request.add(
        EmailSubmissionSet(
            create={
                "s": {  # type: ignore[dict-item]  # raw JSON, as in _import_and_submit
                    "identityId": identity_id,
                    "emailId": email_id,
                    "envelope": {"mailFrom": {"email": sender}, "rcptTo": [{"email": r} for r in recipients]},
                }
            },
            on_success_update_email={
                "#s": {f"mailboxIds/{drafts}": None, f"mailboxIds/{sent}": True, "keywords/$draft": None}
            },
        )
    )
    result = (await svc.jmap.call(row.address, request)).get(submitted, what="message submission")
    if not (result.get("created") or {}).get("s"):
        failed = (result.get("notCreated") or {}).get("s") or {"type": "serverFail"}
        logger.warning("EmailSubmission/set refused a scheduled message of %s: %s", row.id, failed.get("type"))
        raise ServiceUnavailable("The mail server did not accept the message for sending.")


async def _import_and_submit(
    svc: Services, row: Mailbox, folders: dict[str, str], data: bytes, draft: compose.Draft, identity_id: str
) -> tuple[str, str]:
    """Upload, import into Drafts and submit in ONE JMAP request (after the upload); the Sent
    copy's (email id, thread id). A failed submission destroys the draft again."""
    blob_id = await svc.jmap.upload(row.address, data, "message/rfc822")
    drafts, sent = folders["drafts"], folders["sent"]
    request = Request()
    imported = request.add(
        jemail.EmailImport(emails={"d": jemail.import_entry(blob_id, [drafts], ["$draft", "$seen"], None)})
    )
    submitted = request.add(
        EmailSubmissionSet(
            create={
                "s": {  # type: ignore[dict-item]  # raw JSON: jmapc's model would drop the envelope's shape
                    "identityId": identity_id,
                    "emailId": "#d",
                    "envelope": {
                        "mailFrom": {"email": draft.sender.address},
                        "rcptTo": [{"email": r} for r in draft.envelope_recipients],
                    },
                }
            },
            on_success_update_email={
                "#s": {f"mailboxIds/{drafts}": None, f"mailboxIds/{sent}": True, "keywords/$draft": None}
            },
        )
    )
    results = await svc.jmap.call(row.address, request)
    got = results.get(imported, what="message import")
    created = (got.get("created") or {}).get("d")
    if not created:
        failed = (got.get("notCreated") or {}).get("d") or {"type": "serverFail"}
        if failed.get("type") == "alreadyExists":
            raise Conflict("A message with this Message-ID is already in the mailbox.")
        if failed.get("type") == "overQuota":
            raise _over_quota(row)
        raise from_jmap(failed, what="message import")
    email_id, thread_id = str(created["id"]), str(created["threadId"])
    result = results.get(submitted, what="message submission")
    if not (result.get("created") or {}).get("s"):
        failed = (result.get("notCreated") or {}).get("s") or {"type": "serverFail"}
        logger.warning("EmailSubmission/set refused a message of %s: %s", row.id, failed.get("type"))
        await _destroy(svc, row, email_id)
        raise ServiceUnavailable("The mail server did not accept the message for sending; retry shortly.")
    return email_id, thread_id


async def destroy(svc: Services, row: Mailbox, email_id: str) -> None:
    """Destroy ``email_id`` of ``row`` (a draft no longer wanted); failures are logged."""
    await _destroy(svc, row, email_id)


async def _destroy(svc: Services, row: Mailbox, email_id: str) -> None:
    request = Request()
    request.add(EmailSet(destroy=[email_id]))
    try:
        await svc.jmap.call(row.address, request)
    except Exception:
        logger.exception("could not destroy the unsent draft %s of %s", email_id, row.id)


async def mark_answered(svc: Services, row: Mailbox, email_id: str) -> None:
    """``$answered`` on the message replied to (RFC 8621 section 4.1.1)."""
    request = Request()
    call = request.add(EmailSet(update={email_id: {"keywords/$answered": True}}))
    try:
        (await svc.jmap.call(row.address, request)).get(call, what="message update")
    except Exception:
        logger.exception("could not set $answered on %s of %s", email_id, row.id)
