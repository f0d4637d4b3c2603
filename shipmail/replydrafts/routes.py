"""Reply drafts of inbox threads: ``/v1/mailboxes/{id}/inbox/threads/{thread_id}/drafts``
(:mod:`shipmail.replydrafts.service`)."""

from __future__ import annotations

from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.jmap import ids
from shipmail.mailboxes import service as mailboxes
from shipmail.replydrafts import service as drafts
from shipmail.replydrafts.schemas import (
    CreateInboxReplyDraftRequest,
    InboxReplyDraft,
    InboxReplyDraftList,
    InboxReplyDraftSend,
    UpdateInboxReplyDraftRequest,
)

operations: list[Operation] = []

_TAGS = ("Mailboxes", "Messages")
_BASE = "/mailboxes/{id}/inbox/threads/{thread_id}/drafts"


@operation(
    operations,
    "POST",
    _BASE,
    operation_id="createMailboxInboxReplyDraft",
    summary="Create a recipient-safe inbox reply draft",
    scope=Scope.DRAFTS_WRITE,
    tier=Tier.WRITE,
    body=CreateInboxReplyDraftRequest,
    response=InboxReplyDraft,
    status_code=201,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def create_reply_draft(ctx: Context[CreateInboxReplyDraftRequest, None]) -> InboxReplyDraft:
    """Save a reply draft of the thread: To/Cc derived from its latest inbound message (To: its
    Reply-To, else its From; `reply_all` adds its other To and Cc recipients, the mailbox's own
    addresses left out), subject `Re: ...`, In-Reply-To/References set; stored in the mailbox's
    Drafts folder (`$draft`) and bound to `expected_reply_version` (Shipmail SDK 0.6.7:
    `expected_version`). 409 when that is not the thread's current `reply_version`; 422 without
    text and html or when the thread has no inbound message; 404 for an unknown thread."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    thread_id = ids.from_wire(ids.THREAD, ctx.path["thread_id"])
    return await drafts.create(ctx.services, ctx.session, row, thread_id, ctx.body)


@operation(
    operations,
    "POST",
    f"{_BASE}/{{draft_id}}/send",
    operation_id="sendMailboxInboxReplyDraft",
    summary="Send an approved inbox reply draft",
    scope=Scope.MESSAGES_SEND,
    tier=Tier.SEND,
    response=InboxReplyDraftSend,
    status_code=201,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def send_reply_draft(ctx: Context[None, None]) -> InboxReplyDraftSend:
    """Send the draft as a reply to the message it answers, through the same path as
    `replyToMailboxInboxMessage` (the `message` in the answer). 409 without sending when the
    thread's `reply_version` or newest message changed after the draft was made (a message
    arrived or was sent, or its state was updated: the draft becomes `invalidated`), or when the
    draft was sent already; 404 for an unknown draft. Send errors as for `sendMessage`."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    thread_id = ids.from_wire(ids.THREAD, ctx.path["thread_id"])
    return await drafts.send(ctx.services, ctx.session, row, thread_id, ctx.path["draft_id"])


@operation(
    operations,
    "GET",
    _BASE,
    operation_id="listMailboxInboxReplyDrafts",
    summary="List the reply drafts of an inbox thread",
    scope=Scope.DRAFTS_READ,
    tier=Tier.READ,
    response=InboxReplyDraftList,
    errors=(401, 403, 404, 409, 422, 429),
    tags=_TAGS,
)
async def list_reply_drafts(ctx: Context[None, None]) -> InboxReplyDraftList:
    """The thread's reply drafts (every status), oldest first (Shipmail SDK 0.6.7's
    `list_inbox_reply_drafts`; not in the reference)."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    thread_id = ids.from_wire(ids.THREAD, ctx.path["thread_id"])
    return InboxReplyDraftList(data=await drafts.list_for_thread(ctx.session, row, thread_id))


@operation(
    operations,
    "GET",
    f"{_BASE}/{{draft_id}}",
    operation_id="getMailboxInboxReplyDraft",
    summary="Get an inbox reply draft",
    scope=Scope.DRAFTS_READ,
    tier=Tier.READ,
    response=InboxReplyDraft,
    errors=(401, 403, 404, 409, 422, 429),
    tags=_TAGS,
)
async def get_reply_draft(ctx: Context[None, None]) -> InboxReplyDraft:
    """One reply draft (SDK 0.6.7's `get_inbox_reply_draft`; not in the reference). 404 for an
    unknown draft or one of another thread."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    thread_id = ids.from_wire(ids.THREAD, ctx.path["thread_id"])
    return drafts.render(await drafts.get(ctx.session, row, thread_id, ctx.path["draft_id"]))


@operation(
    operations,
    "PATCH",
    f"{_BASE}/{{draft_id}}",
    operation_id="updateMailboxInboxReplyDraft",
    summary="Update an inbox reply draft",
    scope=Scope.DRAFTS_WRITE,
    tier=Tier.WRITE,
    body=UpdateInboxReplyDraftRequest,
    response=InboxReplyDraft,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def update_reply_draft(ctx: Context[UpdateInboxReplyDraftRequest, None]) -> InboxReplyDraft:
    """Replace the draft's body (SDK 0.6.7's `update_inbox_reply_draft`; not in the reference):
    recipients, subject and the bound `expected_reply_version` stay; the Drafts copy is
    replaced. 409 unless its status is `draft`."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    thread_id = ids.from_wire(ids.THREAD, ctx.path["thread_id"])
    return await drafts.update(ctx.services, ctx.session, row, thread_id, ctx.path["draft_id"], ctx.body)


@operation(
    operations,
    "DELETE",
    f"{_BASE}/{{draft_id}}",
    operation_id="deleteMailboxInboxReplyDraft",
    summary="Delete an inbox reply draft",
    scope=Scope.DRAFTS_WRITE,
    tier=Tier.WRITE,
    status_code=204,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def delete_reply_draft(ctx: Context[None, None]) -> None:
    """Delete the draft and its Drafts copy (SDK 0.6.7's `delete_inbox_reply_draft`; not in the
    reference). 409 while it is being sent."""
    row = await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])
    thread_id = ids.from_wire(ids.THREAD, ctx.path["thread_id"])
    await drafts.delete(ctx.services, ctx.session, row, thread_id, ctx.path["draft_id"])
