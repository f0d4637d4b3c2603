"""Sending: ``/v1/messages`` (send, list, get) and the replies (``/v1/messages/{id}/reply``,
``/v1/mailboxes/{id}/inbox/messages/{message_id}/reply``, ``.../inbox/threads/{thread_id}/reply``);
and the sandbox's ``POST /v1/mailboxes/{id}/sandbox/inbound``, which answers a ``Message`` too
(the delivery itself is :mod:`shipmail.sandbox.service`'s)."""

from __future__ import annotations

from shipmail.auth.scopes import Scope
from shipmail.http.errors import NotFound
from shipmail.http.idempotency import Idempotency
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.http.schemas import Pagination
from shipmail.jmap import ids
from shipmail.mailboxes import service as mailboxes
from shipmail.messages import scheduled, staged
from shipmail.messages import service as messages
from shipmail.messages.schemas import (
    ListMessagesQuery,
    ListScheduledMessagesQuery,
    Message,
    MessageList,
    PrepareStagedAttachmentUploadRequest,
    ReplyToThreadRequest,
    ScheduledMessage,
    ScheduledMessageList,
    SendMessageRequest,
    StageAttachmentQuery,
    StagedAttachment,
    StagedAttachmentUpload,
    UpdateScheduledMessageRequest,
)
from shipmail.sandbox import service as sandbox
from shipmail.sandbox.schemas import InjectSandboxInboundRequest

operations: list[Operation] = []

_TAGS = ("Messages",)
_SEND_ERRORS = (401, 403, 404, 409, 422, 429, 503)


@operation(
    operations,
    "POST",
    "/messages",
    operation_id="sendMessage",
    summary="Send a message",
    scope=Scope.MESSAGES_SEND,
    tier=Tier.SEND,
    body=SendMessageRequest,
    response=Message,
    status_code=201,
    errors=_SEND_ERRORS,
    tags=_TAGS,
)
async def send_message(ctx: Context[SendMessageRequest, None]) -> Message:
    """Send an email from a mailbox of this organisation: `from` (an identity of the mailbox,
    which it resolves to) or `mailbox_id`. The message is built as MIME (text and HTML
    alternatives, base64 attachments, RFC 2047/2231 encodings, a `Message-ID` on the sender's
    domain), stored in the mailbox's Drafts and submitted by the mail server (JMAP
    EmailSubmission), which moves it to Sent. Delivery is queued: recipients on this service's
    domains get it over LMTP, others through the configured SMTP relay (or the outbox);
    `status` is `queued` until every recipient is done (`last_error` while a temporary refusal
    is retried), then `sent` or `failed`. Bcc recipients are envelope recipients only: never in
    a header.

    422: neither `from` nor `mailbox_id`, a `from` that is not an identity of the mailbox, more
    than 50 recipients (to + cc + bcc), CR/LF or other control characters in names, subject or
    headers, no text nor html, bad attachments (base64, at most 20, 3 MB each and together).
    409: the mailbox is suspended. 404: unknown `mailbox_id`. 503: the mail server is
    unavailable (nothing was sent).

    `staged_attachment_ids`: attachments staged by this API key for this mailbox
    (`stageMailboxAttachment`); at most 20 attachments in all, 25 MB together; 404 for an id that
    is unknown, expired, or another key's, organisation's or mailbox's. `scheduled_at`: send later
    (more than 1 s and at most 365 days ahead; earlier times send at once): `status` is
    `scheduled` until its time (see `listScheduledMessages`), the message waits in the mailbox's
    Drafts. `client_reference` is unique within the organisation: a second message with the same
    one answers 409. `metadata`: at most 20 scalar values and 8 KB of JSON (422 beyond)."""
    key_id = ctx.principal.key_id if ctx.principal is not None else None
    return await messages.send(ctx.services, ctx.session, ctx.organization_id, ctx.body, key_id=key_id)


@operation(
    operations,
    "GET",
    "/messages",
    operation_id="listMessages",
    summary="List messages",
    scope=Scope.MESSAGES_READ,
    tier=Tier.READ,
    query=ListMessagesQuery,
    response=MessageList,
    errors=(401, 403, 422, 429),
    tags=_TAGS,
)
async def list_messages(ctx: Context[None, ListMessagesQuery]) -> MessageList:
    """Messages sent through the API by this organisation's mailboxes, oldest first; optionally
    of one `mailbox_id` and/or with one exact `client_reference`."""
    rows, next_cursor, has_more = await messages.list_page(ctx.services, ctx.session, ctx.organization_id, ctx.query)
    return MessageList(
        data=[messages.render(r) for r in rows],
        pagination=Pagination(next_cursor=next_cursor, has_more=has_more, limit=ctx.query.limit),
    )


@operation(
    operations,
    "GET",
    "/messages/{id}",
    operation_id="getMessage",
    summary="Get a message",
    scope=Scope.MESSAGES_READ,
    tier=Tier.READ,
    response=Message,
    errors=(401, 403, 404, 429),
    tags=_TAGS,
)
async def get_message(ctx: Context[None, None]) -> Message:
    """One message sent through the API, with its delivery `status`."""
    return messages.render(await messages.get(ctx.session, ctx.organization_id, ctx.path["id"]))


@operation(
    operations,
    "POST",
    "/messages/{id}/reply",
    operation_id="replyToMessage",
    summary="Reply to a message",
    scope=Scope.MESSAGES_SEND,
    tier=Tier.SEND,
    body=ReplyToThreadRequest,
    response=Message,
    status_code=201,
    errors=_SEND_ERRORS,
    tags=_TAGS,
)
async def reply_to_message(ctx: Context[ReplyToThreadRequest, None]) -> Message:
    """Send a follow-up in the thread of a message sent through the API (`msg_...`), from the
    same mailbox: `In-Reply-To`/`References` name it, the subject is `Re: <its subject>`.
    `scheduled_at` sends it later, as for `sendMessage`. Errors as for `sendMessage`; 404 for an
    unknown message or one whose Sent copy is gone."""
    sent = await messages.get(ctx.session, ctx.organization_id, ctx.path["id"])
    row = await mailboxes.get(ctx.session, ctx.organization_id, sent.mailbox_id)
    if sent.email_id is None:
        raise NotFound(f"No message with id {ctx.path['id']!r}.")
    return await messages.reply(ctx.services, ctx.session, row, sent.email_id, ctx.body)


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/inbox/messages/{message_id}/reply",
    operation_id="replyToMailboxInboxMessage",
    summary="Reply to a mailbox inbox message",
    scope=Scope.MESSAGES_SEND,
    tier=Tier.SEND,
    body=ReplyToThreadRequest,
    response=Message,
    status_code=201,
    errors=_SEND_ERRORS,
    tags=("Mailboxes", "Messages"),
)
async def reply_to_inbox_message(ctx: Context[ReplyToThreadRequest, None]) -> Message:
    """Reply from the mailbox to one of its messages (`eml_...`): `In-Reply-To` its Message-ID,
    `References` its references and Message-ID, subject `Re: <its subject>`, so the reply joins
    its thread; the message gets the `$answered` keyword. The sender is the mailbox's identity.
    Errors as for `sendMessage`; 404 for an unknown message."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    email_id = ids.from_wire(ids.EMAIL, ctx.path["message_id"])
    return await messages.reply(ctx.services, ctx.session, row, email_id, ctx.body)


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/inbox/threads/{thread_id}/reply",
    operation_id="replyToMailboxInboxThread",
    summary="Reply to a mailbox inbox thread",
    scope=Scope.MESSAGES_SEND,
    tier=Tier.SEND,
    body=ReplyToThreadRequest,
    response=Message,
    status_code=201,
    errors=_SEND_ERRORS,
    tags=("Mailboxes", "Messages"),
)
async def reply_to_inbox_thread(ctx: Context[ReplyToThreadRequest, None]) -> Message:
    """Reply to the thread's newest inbound message (not in Sent or Drafts; the newest message
    when there is none), as `replyToMailboxInboxMessage` does. 404 for an unknown thread."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    thread_id = ids.from_wire(ids.THREAD, ctx.path["thread_id"])
    email_id = await messages.latest_inbound(ctx.services, ctx.session, row, thread_id)
    return await messages.reply(ctx.services, ctx.session, row, email_id, ctx.body)


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/sandbox/inbound",
    operation_id="injectSandboxInbound",
    summary="Inject a sandbox inbound message",
    scope=Scope.MESSAGES_WRITE,
    tier=Tier.WRITE,
    body=InjectSandboxInboundRequest,
    response=Message,
    status_code=201,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=("Mailboxes", "Messages"),
)
async def inject_sandbox_inbound(ctx: Context[InjectSandboxInboundRequest, None]) -> Message:
    """Build an RFC 5322 message from the body (text/plain, text/html, or multipart/alternative
    when both bodies are given; Date from `received_at`; a Message-ID is generated when absent)
    and deliver it to the mailbox through the mail server's inbound path, so the mailbox's
    delivery rules run as for mail from the internet. Nothing is sent to the `from`, `to` or `cc`
    addresses. Answers 201 with the reference's `Message` object (`source` `inbound`, `status`
    `delivered`, `id` `msg_...`; `email_id` and `thread_id` name the stored copy as the inbox
    lists it, `eml_...`/`thr_...`; `in_reply_to`/`references` thread it with earlier messages);
    `GET /messages/{id}` reads it again.

    422: no text nor html, CR/LF/NUL or other control characters in any header value, an invalid
    address or message id, a header other than List-Unsubscribe, List-Unsubscribe-Post (RFC 8058)
    and non-reserved X-*. 409: a message with this `message_id` is already in the mailbox, or the
    mailbox is suspended (`POST /mailboxes/{id}/resume` first). 404:
    not a mailbox of this organisation. 503: the mail server is unavailable (Retry-After)."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    delivered = await sandbox.inject(ctx.services, row, ctx.body)
    headers = [{"name": h.name, "value": h.value} for h in ctx.body.headers or []]
    return await messages.record_inbound(ctx.session, row, delivered, headers)


# ------------------------------------------------------------------------- staged attachments


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/staged-attachments",
    operation_id="stageMailboxAttachment",
    summary="Stage a message attachment",
    scope=Scope.MESSAGES_SEND,
    tier=Tier.SEND,
    query=StageAttachmentQuery,
    response=StagedAttachment,
    status_code=201,
    errors=(401, 403, 404, 409, 413, 422, 429, 503),
    tags=("Mailboxes", "Messages"),
    raw_body="application/octet-stream",
)
async def stage_attachment(ctx: Context[None, StageAttachmentQuery]) -> StagedAttachment:
    """Upload raw attachment bytes (1 byte to 25 MiB; the request's `Content-Type` is the
    attachment's type, `application/octet-stream` when absent) for a later `sendMessage` or
    `updateScheduledMessage` from this mailbox (`staged_attachment_ids`). The bytes are stored in
    the mailbox's account on the mail server (a JMAP blob, RFC 8620 section 6.1). The id is bound
    to this API key, organisation and mailbox and expires after 24 hours. 413: more than 25 MiB.
    422: empty, a file name with control characters, a bad content type. 404: unknown mailbox."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    assert ctx.principal is not None
    return await staged.stage(ctx.services, ctx.session, row, ctx.principal.key_id, ctx.query.filename, ctx.request)


@operation(
    operations,
    "POST",
    "/mailboxes/{id}/staged-attachment-upload-tokens",
    operation_id="prepareStagedAttachmentUpload",
    summary="Prepare a one-time attachment upload",
    scope=Scope.MESSAGES_SEND,
    tier=Tier.SEND,
    body=PrepareStagedAttachmentUploadRequest,
    response=StagedAttachmentUpload,
    status_code=201,
    errors=(401, 403, 404, 409, 422, 429),
    tags=("Mailboxes", "Messages"),
    idempotency=Idempotency.REFUSED,
)
async def prepare_staged_upload(ctx: Context[PrepareStagedAttachmentUploadRequest, None]) -> StagedAttachmentUpload:
    """A five-minute, single-use `upload_url` bound to this API key, organisation, mailbox, file
    name, content type, byte size and SHA-256: POST exactly those bytes to it (no API key) to
    stage them (`consumeStagedAttachmentUpload`). Idempotency-Key is refused: the response holds
    a one-time URL. 422: bad name or type. 404: unknown mailbox."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    assert ctx.principal is not None
    return await staged.prepare(
        ctx.services, ctx.session, row, ctx.principal.key_id, ctx.body, str(ctx.request.base_url)
    )


@operation(
    operations,
    "POST",
    staged.UPLOAD_PATH,
    operation_id="consumeStagedAttachmentUpload",
    summary="Upload bytes through a prepared URL",
    scope=None,
    tier=Tier.SEND,
    response=StagedAttachment,
    status_code=201,
    errors=(404, 413, 422, 503),
    tags=("Messages",),
    raw_body="*/*",
)
async def consume_staged_upload(ctx: Context[None, None]) -> StagedAttachment:
    """The `upload_url` of `prepareStagedAttachmentUpload` (no API key: the URL is the
    credential): the body is the exact raw bytes declared. The token is consumed by the first
    successful upload. 404: unknown, used or expired URL. 413: more bytes than declared. 422:
    fewer bytes, or another SHA-256 (the URL stays usable until it expires)."""
    return await staged.consume(ctx.services, ctx.session, ctx.path["token"], ctx.request)


# ------------------------------------------------------------------------- scheduled messages

_SCHEDULED_TAGS = ("Messages",)


@operation(
    operations,
    "GET",
    "/scheduled-messages",
    operation_id="listScheduledMessages",
    summary="List scheduled messages",
    scope=Scope.MESSAGES_READ,
    tier=Tier.READ,
    query=ListScheduledMessagesQuery,
    response=ScheduledMessageList,
    errors=(401, 403, 422, 429),
    tags=_SCHEDULED_TAGS,
)
async def list_scheduled(ctx: Context[None, ListScheduledMessagesQuery]) -> ScheduledMessageList:
    """The organisation's messages waiting for their `scheduled_at`, soonest first (at most
    `limit`; `total` counts all); `search` matches the subject or a recipient. No undo holds are
    made by this service, so `include_held` changes nothing."""
    return await scheduled.list_scheduled(ctx.session, ctx.organization_id, ctx.query)


@operation(
    operations,
    "GET",
    "/scheduled-messages/{id}",
    operation_id="getScheduledMessage",
    summary="Get a scheduled message",
    scope=Scope.MESSAGES_READ,
    tier=Tier.READ,
    response=ScheduledMessage,
    errors=(401, 403, 404, 422, 429),
    tags=_SCHEDULED_TAGS,
)
async def get_scheduled(ctx: Context[None, None]) -> ScheduledMessage:
    """A message (`msg_...`) waiting for its time, with its bodies; 404 once it was dispatched
    or cancelled (`getMessage` shows it then)."""
    return await scheduled.get(ctx.session, ctx.organization_id, ctx.path["id"])


@operation(
    operations,
    "PATCH",
    "/scheduled-messages/{id}",
    operation_id="updateScheduledMessage",
    summary="Update a scheduled message",
    scope=Scope.MESSAGES_SEND,
    tier=Tier.SEND,
    body=UpdateScheduledMessageRequest,
    response=ScheduledMessage,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_SCHEDULED_TAGS,
)
async def update_scheduled(ctx: Context[UpdateScheduledMessageRequest, None]) -> ScheduledMessage:
    """Replace recipients, subject, bodies (kept when neither `text` nor `html` is given),
    threading headers, attachments (`staged_attachment_ids`; kept when absent, `[]` removes them)
    and `scheduled_at` (a time now or past sends it at once) before dispatch begins. 409: it was
    dispatched or cancelled. 404: unknown, or not a scheduled message. 422 as for `sendMessage`."""
    key_id = ctx.principal.key_id if ctx.principal is not None else None
    return await scheduled.update(ctx.services, ctx.session, ctx.organization_id, key_id, ctx.path["id"], ctx.body)


@operation(
    operations,
    "DELETE",
    "/scheduled-messages/{id}",
    operation_id="cancelScheduledMessage",
    summary="Cancel a scheduled message",
    scope=Scope.MESSAGES_SEND,
    tier=Tier.SEND,
    status_code=204,
    errors=(401, 403, 404, 409, 422, 429),
    tags=_SCHEDULED_TAGS,
)
async def cancel_scheduled(ctx: Context[None, None]) -> None:
    """Cancel a scheduled message before dispatch begins: it is never sent, its `status` is
    `cancelled`, its draft is removed and the send no longer counts against the mailbox's limits.
    409: dispatch began (or it was cancelled already). 404: unknown, or not a scheduled message."""
    await scheduled.cancel(ctx.services, ctx.session, ctx.organization_id, ctx.path["id"])
