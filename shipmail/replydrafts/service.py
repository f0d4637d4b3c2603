"""Recipient-safe reply drafts of a mailbox's inbox threads.

Source: Shipmail ``createMailboxInboxReplyDraft`` and ``sendMailboxInboxReplyDraft``.

Creating a draft (:func:`create`)
    The thread's reply state is read (:func:`shipmail.inbox.service.thread_state`: one JMAP
    request); its ``reply_version`` must be the draft's ``expected_reply_version`` (409
    otherwise). The recipients come from the thread's latest inbound message (one Email/get):
    To its Reply-To, else its From; with ``reply_all`` also Cc its other To and Cc recipients,
    the mailbox's own addresses (address, aliases) and duplicates left out. The draft is stored
    twice: as the mailbox's Drafts-folder message (``Email/import`` with ``$draft`` and
    ``$seen``, threaded with In-Reply-To/References, so a mail client shows it; drafts never
    count in the reply state) and as a row binding it to the version and to the thread's newest
    message then.

Sending it (:func:`send`)
    The thread is read again: when its ``reply_version`` or its newest message differ from the
    draft's (a message arrived or was sent meanwhile, or its state changed), the draft becomes
    ``invalidated`` and the answer is 409: nothing is sent. Otherwise the row is moved to
    ``sending`` (only from ``draft``: a second concurrent send answers 409) and the reply goes
    through the one sending path (:func:`shipmail.messages.service.reply`: the mailbox's
    identity, ``$answered``, Sent, the outgoing queue), to the recipients derived at creation;
    then the row is ``sent`` and the Drafts copy destroyed. A failed send puts the row back to
    ``draft``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from jmapc.methods import EmailGet
from sqlalchemy import update as sa_update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shipmail import ids as public_ids
from shipmail.http.errors import Conflict, NotFound, ValidationFailed, detail
from shipmail.inbox import service as inbox
from shipmail.jmap import email as jemail
from shipmail.jmap import ids
from shipmail.jmap.errors import from_jmap
from shipmail.jmap.request import Request
from shipmail.mailboxes.accounts import system_folders
from shipmail.mailboxes.models import Mailbox
from shipmail.messages import compose
from shipmail.messages import service as messages
from shipmail.messages.schemas import ReplyToThreadRequest
from shipmail.replydrafts.models import DraftStatus, InboxReplyDraftRow
from shipmail.replydrafts.schemas import (
    CreateInboxReplyDraftRequest,
    InboxReplyDraft,
    InboxReplyDraftSend,
    UpdateInboxReplyDraftRequest,
)
from shipmail.runtime import Services
from shipmail.sandbox.schemas import RecipientObject
from shipmail.sandbox.service import Party, Problems
from shipmail.utc import now as utcnow

logger = logging.getLogger("shipmail.replydrafts.service")

PREFIX = "drf"
_ORIGINAL_PROPERTIES = ["id", "threadId", "from", "replyTo", "to", "cc", "messageId", "references", "subject"]


def content_sha256(subject: str | None, text: str | None, html: str | None) -> str:
    """SHA-256 (hex) of the draft's content: the canonical JSON of ``[subject, text, html]``."""
    canonical = json.dumps([subject, text, html], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def render(row: InboxReplyDraftRow) -> InboxReplyDraft:
    thread = ids.to_wire(ids.THREAD, row.thread_id)
    return InboxReplyDraft.model_validate(
        {
            "id": row.id,
            "mailbox_id": row.mailbox_id,
            "thread_id": thread,
            "conversation_id": thread,
            "based_on_message_id": ids.to_wire(ids.EMAIL, row.based_on_email_id) if row.based_on_email_id else None,
            "expected_reply_version": row.expected_reply_version,
            "expected_version": row.expected_reply_version,
            "reply_mode": row.reply_mode,
            "status": row.status,
            "to": row.to_addresses,
            "cc": row.cc_addresses,
            "subject": row.subject,
            "text": row.text,
            "html": row.html,
            "content_sha256": content_sha256(row.subject, row.text, row.html),
            "draft_message_id": ids.to_wire(ids.EMAIL, row.email_id) if row.email_id else None,
            "sent_message_id": row.sent_message_id,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "sent_at": row.sent_at,
        }
    )


def _parties(raw: Any) -> list[Party]:
    return [Party(address=str(a["email"]), name=a.get("name") or None) for a in raw or [] if a.get("email")]


def recipients(original: dict[str, Any], mode: str, own: list[str]) -> tuple[list[Party], list[Party]]:
    """To and Cc of a reply to the raw Email ``original`` (module docstring): duplicates and the
    mailbox's ``own`` addresses left out (compared case-insensitively)."""
    skip = {a.lower() for a in own}
    to: list[Party] = []
    for party in _parties(original.get("replyTo")) or _parties(original.get("from")):
        if party.address.lower() not in skip:
            skip.add(party.address.lower())
            to.append(party)
    cc: list[Party] = []
    if mode == "reply_all":
        for party in [*_parties(original.get("to")), *_parties(original.get("cc"))]:
            if party.address.lower() not in skip:
                skip.add(party.address.lower())
                cc.append(party)
    return to, cc


async def _original(svc: Services, row: Mailbox, email_id: str) -> dict[str, Any]:
    request = Request()
    call = request.add(EmailGet(ids=[email_id], properties=_ORIGINAL_PROPERTIES))
    listed = (await svc.jmap.call(row.address, request)).get(call, what="message").get("list") or []
    if not listed:
        raise Conflict("The thread changed while the draft was made; retry.")
    return dict(listed[0])


async def create(
    svc: Services, session: AsyncSession, row: Mailbox, thread_id: str, body: CreateInboxReplyDraftRequest
) -> InboxReplyDraft:
    """A reply draft of ``row``'s thread ``thread_id`` (JMAP id), committed (module docstring).

    404 for an unknown thread; 409 when ``reply_version`` is not the expected one; 422 for a
    body with NUL characters, or a thread without an inbound message to reply to."""
    problems = Problems("reply draft")
    compose.check_bodies(problems, body.text, body.html)
    problems.raise_if_any()
    state = await inbox.thread_state(svc, session, row, thread_id)
    if state.view.version != body.expected:
        raise Conflict(
            f"The thread's reply_version is {state.view.version}, not {body.expected}: read it again.",
            details=[detail("expected_reply_version", "stale_version", "not the thread's current reply_version")],
        )
    if not state.classified.inbound:
        raise ValidationFailed(
            "The thread has no inbound message to reply to.",
            details=[detail("thread_id", "no_inbound_message", "the thread has no inbound message")],
        )
    latest_inbound = state.classified.inbound[-1]
    original = await _original(svc, row, str(latest_inbound["id"]))
    own = await inbox.own_addresses(session, row)
    to, cc = recipients(original, body.reply_mode, own)
    if not to:
        raise ValidationFailed(
            "The latest inbound message has no sender address to reply to.",
            details=[detail("thread_id", "no_recipient", "the latest inbound message names no sender")],
        )
    in_reply_to, references, subject = messages.reply_headers(original)
    draft_id = public_ids.new_id(PREFIX)
    now = utcnow()
    draft = compose.Draft(
        sender=Party(address=row.address, name=row.display_name or None),
        to=to,
        cc=cc,
        subject=subject,
        text=body.text,
        html=body.html,
        message_id=compose.new_message_id(draft_id, row.address.rpartition("@")[2]),
        in_reply_to=in_reply_to,
        references=references,
    )
    data = compose.build(draft, date=now)
    email_id = await _store_draft(svc, session, row, data)
    draft_row = InboxReplyDraftRow(
        id=draft_id,
        organization_id=row.organization_id,
        mailbox_id=row.id,
        thread_id=thread_id,
        based_on_email_id=str(latest_inbound["id"]),
        basis_email_id=state.view.basis_email_id,
        expected_reply_version=state.view.version,
        reply_mode=body.reply_mode,
        status=DraftStatus.DRAFT.value,
        to_addresses=[{"address": p.address, "name": p.name} for p in to],
        cc_addresses=[{"address": p.address, "name": p.name} for p in cc],
        subject=subject,
        text=body.text,
        html=body.html,
        email_id=email_id,
        created_at=now,
        updated_at=now,
    )
    session.add(draft_row)
    try:
        await session.commit()
    except BaseException:
        await messages.destroy(svc, row, email_id)
        raise
    await session.refresh(draft_row)
    return render(draft_row)


async def _store_draft(svc: Services, session: AsyncSession, row: Mailbox, data: bytes) -> str:
    """Import ``data`` into the mailbox's Drafts folder (``$draft``, ``$seen``); its JMAP id."""
    folders = await system_folders(svc, session, row)
    blob_id = await svc.jmap.upload(row.address, data, "message/rfc822")
    request = Request()
    call = request.add(
        jemail.EmailImport(emails={"d": jemail.import_entry(blob_id, [folders["drafts"]], ["$draft", "$seen"], None)})
    )
    got = (await svc.jmap.call(row.address, request)).get(call, what="draft import")
    created = (got.get("created") or {}).get("d")
    if not created:
        raise from_jmap((got.get("notCreated") or {}).get("d") or {"type": "serverFail"}, what="draft import")
    return str(created["id"])


async def get(session: AsyncSession, row: Mailbox, thread_id: str, draft_id: str) -> InboxReplyDraftRow:
    """The draft ``draft_id`` of ``row``'s thread ``thread_id`` (JMAP id); 404 otherwise."""
    found = await session.get(InboxReplyDraftRow, draft_id) if public_ids.has_prefix(draft_id, PREFIX) else None
    if found is None or found.mailbox_id != row.id or found.thread_id != thread_id:
        raise NotFound(f"No reply draft with id {draft_id!r}.")
    return found


async def _move(session: AsyncSession, draft_id: str, source: DraftStatus, target: DraftStatus) -> bool:
    """Set the draft's status to ``target`` if it is ``source`` (committed); whether it was."""
    await session.commit()  # end the read transaction: compared against the row as committed now
    done = await session.exec(
        sa_update(InboxReplyDraftRow)
        .where(col(InboxReplyDraftRow.id) == draft_id)
        .where(col(InboxReplyDraftRow.status) == source.value)
        .values(status=target.value, updated_at=utcnow())
    )
    await session.commit()
    return bool(done.rowcount == 1)


async def send(
    svc: Services, session: AsyncSession, row: Mailbox, thread_id: str, draft_id: str
) -> InboxReplyDraftSend:
    """Send the draft (module docstring); 409 when the thread moved on (the draft becomes
    ``invalidated``) or the draft is not a ``draft`` any more; 404 for an unknown draft."""
    found = await get(session, row, thread_id, draft_id)
    # Read before the commits below expire the row.
    status, version, basis = found.status, found.expected_reply_version, found.basis_email_id
    based_on, draft_email = found.based_on_email_id, found.email_id
    to, cc, text, html = list(found.to_addresses), list(found.cc_addresses), found.text, found.html
    if status != DraftStatus.DRAFT.value:
        raise Conflict(f"The reply draft is {status}: only a draft can be sent.")
    state = await inbox.thread_state(svc, session, row, thread_id)
    if state.view.version != version or state.view.basis_email_id != basis:
        await _move(session, draft_id, DraftStatus.DRAFT, DraftStatus.INVALIDATED)
        raise Conflict(
            f"The thread moved on since the draft was made (reply_version {state.view.version}, the draft's "
            f"{version}): the draft was not sent and is invalidated; make a new one.",
            details=[detail("expected_reply_version", "thread_moved_on", "the thread changed after the draft")],
        )
    if not await _move(session, draft_id, DraftStatus.DRAFT, DraftStatus.SENDING):
        raise Conflict("The reply draft is being sent or was sent already.")
    assert based_on is not None
    request = ReplyToThreadRequest(
        to=[RecipientObject(address=p["address"], name=p.get("name")) for p in to],
        cc=[RecipientObject(address=p["address"], name=p.get("name")) for p in cc] or None,
        text=text,
        html=html,
    )
    try:
        message = await messages.reply(svc, session, row, based_on, request)
    except BaseException:
        await session.rollback()
        await _move(session, draft_id, DraftStatus.SENDING, DraftStatus.DRAFT)
        raise
    now = utcnow()
    await session.exec(
        sa_update(InboxReplyDraftRow)
        .where(col(InboxReplyDraftRow.id) == draft_id)
        .values(status=DraftStatus.SENT.value, sent_message_id=message.id, sent_at=now, updated_at=now)
    )
    await session.commit()
    if draft_email is not None:
        await messages.destroy(svc, row, draft_email)
    return InboxReplyDraftSend(draft_id=draft_id, message=message)


async def list_for_thread(session: AsyncSession, row: Mailbox, thread_id: str) -> list[InboxReplyDraft]:
    """The reply drafts of ``row``'s thread ``thread_id`` (JMAP id), oldest first."""
    rows = await session.exec(
        select(InboxReplyDraftRow)
        .where(InboxReplyDraftRow.mailbox_id == row.id)
        .where(InboxReplyDraftRow.thread_id == thread_id)
        .order_by(col(InboxReplyDraftRow.created_at), col(InboxReplyDraftRow.id))
    )
    return [render(r) for r in rows.all()]


async def update(
    svc: Services,
    session: AsyncSession,
    row: Mailbox,
    thread_id: str,
    draft_id: str,
    body: UpdateInboxReplyDraftRequest,
) -> InboxReplyDraft:
    """Replace the draft's body (its recipients, subject and binding stay): a new Drafts copy,
    the old one destroyed. 409 unless it is a ``draft``; 404 for an unknown draft."""
    problems = Problems("reply draft")
    compose.check_bodies(problems, body.text, body.html)
    problems.raise_if_any()
    found = await get(session, row, thread_id, draft_id)
    if found.status != DraftStatus.DRAFT.value:
        raise Conflict(f"The reply draft is {found.status}: only a draft can be changed.")
    old_email = found.email_id
    in_reply_to: str | None = None
    references: list[str] = []
    if found.based_on_email_id is not None:  # 409 when the message answered is gone
        in_reply_to, references, _ = messages.reply_headers(await _original(svc, row, found.based_on_email_id))
    now = utcnow()
    draft = compose.Draft(
        sender=Party(address=row.address, name=row.display_name or None),
        to=[Party(address=p["address"], name=p.get("name")) for p in found.to_addresses],
        cc=[Party(address=p["address"], name=p.get("name")) for p in found.cc_addresses],
        subject=found.subject or "",
        text=body.text,
        html=body.html,
        message_id=compose.new_message_id(draft_id, row.address.rpartition("@")[2]),
        in_reply_to=in_reply_to,
        references=references,
    )
    email_id = await _store_draft(svc, session, row, compose.build(draft, date=now))
    found.text, found.html, found.email_id, found.updated_at = body.text, body.html, email_id, now
    session.add(found)
    try:
        await session.commit()
    except BaseException:
        await messages.destroy(svc, row, email_id)
        raise
    if old_email is not None:
        await messages.destroy(svc, row, old_email)
    await session.refresh(found)
    return render(found)


async def delete(svc: Services, session: AsyncSession, row: Mailbox, thread_id: str, draft_id: str) -> None:
    """Delete the draft and its Drafts copy; 409 while it is being sent; 404 for an unknown draft."""
    found = await get(session, row, thread_id, draft_id)
    if found.status == DraftStatus.SENDING.value:
        raise Conflict("The reply draft is being sent.")
    email_id = found.email_id if found.status == DraftStatus.DRAFT.value or found.status == "invalidated" else None
    await session.delete(found)
    await session.commit()
    if email_id is not None:
        await messages.destroy(svc, row, email_id)
