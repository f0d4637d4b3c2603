"""Inbox: a mailbox's messages and threads (``/v1/mailboxes/{id}/inbox/...``), through JMAP.

Each read is one JMAP request; ids on the wire are ``eml_``/``thr_``/``fld_`` + the JMAP id. The
handlers resolve the mailbox in the request's session (404 for another organisation's) and pass
that session on (:mod:`shipmail.inbox.service`). The reads answer with the declared model's JSON
rendered from the service's data dicts (:mod:`shipmail.inbox.rendering`: the same bytes).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from shipmail.auth.scopes import Scope
from shipmail.http.ratelimit import Tier
from shipmail.http.routing import Context, Operation, operation
from shipmail.inbox import service as inbox
from shipmail.inbox.schemas import (
    InboxFullMessage,
    InboxListQuery,
    InboxMessageAction,
    InboxMessages,
    InboxThread,
    InboxThreadListQuery,
    InboxThreadReplyStateResult,
    InboxThreads,
    MessageQuery,
    MoveInboxMessageRequest,
    UpdateInboxMessageRequest,
    UpdateInboxThreadReplyStateRequest,
)
from shipmail.jmap import ids
from shipmail.mailboxes import service as mailboxes
from shipmail.mailboxes.models import Mailbox

operations: list[Operation] = []

_TAGS = ("Mailboxes",)
_BASE = "/mailboxes/{id}/inbox"


async def _row(ctx: Context[Any, Any]) -> Mailbox:
    return await mailboxes.get(ctx.session, ctx.organization_id, ctx.path["id"])


def _action(row: Mailbox, message_id: str) -> InboxMessageAction:
    return InboxMessageAction(mailbox_id=row.id, address=row.address, message_id=message_id)


@operation(
    operations,
    "GET",
    f"{_BASE}/messages",
    operation_id="listMailboxInboxMessages",
    summary="List mailbox inbox messages",
    scope=Scope.MESSAGES_READ,
    tier=Tier.READ,
    query=InboxListQuery,
    response=InboxMessages,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def list_messages(ctx: Context[None, InboxListQuery]) -> Response:
    """Messages of the mailbox, newest first, in full (the shape of one message: headers, bodies,
    body parts and attachments), each body value at most 32 KiB of UTF-8 (`is_truncated` when
    cut; one message: up to 4 MiB), with folder, keyword, date, text and attachment filters.
    `from`, `to` and `subject` match a case-insensitive substring of the decoded header;
    `search_text` is a full-text search (words). The first page fixes the `before` cutoff
    (`pagination.snapshot_at`): mail arriving later is not listed and does not shift later pages.
    The cursor is bound to the mailbox and the filters (422 with other filters); send it unchanged.
    Without folder_id/folder_role every folder is listed; `starred` lists `$flagged` mail outside
    Trash and Junk."""
    row = await _row(ctx)
    return inbox.MESSAGES_JSON.wire_response(await inbox.list_messages_data(ctx.services, ctx.session, row, ctx.query))


@operation(
    operations,
    "GET",
    f"{_BASE}/messages/{{message_id}}",
    operation_id="getMailboxInboxMessage",
    summary="Get one exact mailbox inbox message",
    scope=Scope.MESSAGES_READ,
    tier=Tier.READ,
    query=MessageQuery,
    response=InboxFullMessage,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def get_message(ctx: Context[None, MessageQuery]) -> Response:
    """The full message: headers (unfolded; `?headers=raw` as stored), text and HTML bodies
    decoded to UTF-8 (up to 4 MiB per part, `is_truncated` beyond), every body part and
    attachment with its `blob_id` and `download_path`. The original message:
    `GET …/messages/{message_id}/raw`."""
    row = await _row(ctx)
    email_id = ids.from_wire(ids.EMAIL, ctx.path["message_id"])
    data = await inbox.get_message_data(ctx.services, row, email_id, raw_headers=ctx.query.headers == "raw")
    return inbox.MESSAGE_JSON.wire_response(data)


@operation(
    operations,
    "PATCH",
    f"{_BASE}/messages/{{message_id}}",
    operation_id="updateMailboxInboxMessage",
    summary="Update mailbox inbox message",
    scope=Scope.MESSAGES_WRITE,
    tier=Tier.WRITE,
    body=UpdateInboxMessageRequest,
    response=InboxMessageAction,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def update_message(ctx: Context[UpdateInboxMessageRequest, None]) -> InboxMessageAction:
    """Set read (`$seen`) and/or starred (`$flagged`); at least one field."""
    row = await _row(ctx)
    email_id = ids.from_wire(ids.EMAIL, ctx.path["message_id"])
    await inbox.update_flags(ctx.services, row, email_id, read=ctx.body.read, starred=ctx.body.starred)
    return _action(row, ctx.path["message_id"])


@operation(
    operations,
    "POST",
    f"{_BASE}/messages/{{message_id}}/move",
    operation_id="moveMailboxInboxMessage",
    summary="Move mailbox inbox message",
    scope=Scope.MESSAGES_WRITE,
    tier=Tier.WRITE,
    body=MoveInboxMessageRequest,
    response=InboxMessageAction,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def move_message(ctx: Context[MoveInboxMessageRequest, None]) -> InboxMessageAction:
    """Move the message to a system folder (`target_role`) or a folder id (`target_folder_id`):
    exactly one. With `from_folder_id` the message must be in that folder (409 otherwise)."""
    row = await _row(ctx)
    email_id = ids.from_wire(ids.EMAIL, ctx.path["message_id"])
    b = ctx.body
    await inbox.move(
        ctx.services,
        ctx.session,
        row,
        email_id,
        target_role=b.target_role,
        target_folder_id=b.target_folder_id,
        from_folder_id=b.from_folder_id,
    )
    return _action(row, ctx.path["message_id"])


@operation(
    operations,
    "DELETE",
    f"{_BASE}/messages/{{message_id}}",
    operation_id="deleteMailboxInboxMessage",
    summary="Delete mailbox inbox message",
    scope=Scope.MESSAGES_WRITE,
    tier=Tier.WRITE,
    status_code=204,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def delete_message(ctx: Context[None, None]) -> None:
    """Permanently delete a message that is in Trash or Junk (422 otherwise: move it to Trash
    first; 409 when the mailbox keeps changing meanwhile)."""
    row = await _row(ctx)
    email_id = ids.from_wire(ids.EMAIL, ctx.path["message_id"])
    await inbox.delete(ctx.services, ctx.session, row, email_id)


@operation(
    operations,
    "GET",
    f"{_BASE}/threads",
    operation_id="listMailboxInboxThreads",
    summary="List mailbox inbox threads",
    scope=Scope.MESSAGES_READ,
    tier=Tier.READ,
    query=InboxThreadListQuery,
    response=InboxThreads,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def list_threads(ctx: Context[None, InboxThreadListQuery]) -> Response:
    """Threads with mail matching the filters (the message-list filters): that message, the
    thread's message and unread counts, first and last dates, latest inbound and outbound
    messages, and its reply state (`reply_state`, `reply_version`, `needs_reply_since`). The
    reply queue: `reply_state` lists one state, `sort_by` (`needs_reply_since` by default, threads
    without one last; `last_message_at`) and `order` (default `asc`) order it, keyset-paged.
    Without them: every thread, newest matching message first. `summary` counts the threads of
    each reply state (and `total`) under the filters other than `reply_state`; reply states are
    computed over the 500 threads with the newest matching mail. Paged under the first page's
    cutoff."""
    row = await _row(ctx)
    return inbox.THREADS_JSON.response(await inbox.list_threads_data(ctx.services, ctx.session, row, ctx.query))


@operation(
    operations,
    "GET",
    f"{_BASE}/threads/{{thread_id}}",
    operation_id="getMailboxInboxThread",
    summary="Get mailbox inbox thread",
    scope=Scope.MESSAGES_READ,
    tier=Tier.READ,
    query=MessageQuery,
    response=InboxThread,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def get_thread(ctx: Context[None, MessageQuery]) -> Response:
    """The thread's messages, oldest first, with bodies and attachment metadata (headers as for
    one message, `?headers=raw`), its reply state and latest inbound and outbound messages."""
    row = await _row(ctx)
    thread_id = ids.from_wire(ids.THREAD, ctx.path["thread_id"])
    data = await inbox.get_thread_data(
        ctx.services, ctx.session, row, thread_id, raw_headers=ctx.query.headers == "raw"
    )
    return inbox.THREAD_JSON.response(data)


@operation(
    operations,
    "PATCH",
    f"{_BASE}/threads/{{thread_id}}",
    operation_id="updateMailboxInboxThreadReplyState",
    summary="Update an inbox thread reply state",
    scope=Scope.MESSAGES_WRITE,
    tier=Tier.WRITE,
    body=UpdateInboxThreadReplyStateRequest,
    response=InboxThreadReplyStateResult,
    errors=(401, 403, 404, 409, 422, 429, 503),
    tags=_TAGS,
)
async def update_thread_reply_state(
    ctx: Context[UpdateInboxThreadReplyStateRequest, None],
) -> InboxThreadReplyStateResult:
    """Resolve (`resolved`), suppress (`no_reply_expected`) or reopen (`needs_reply`) a thread,
    with optimistic concurrency: `expected_reply_version` must be the thread's current
    `reply_version` (409 otherwise: a message arrived or was sent, or another update came
    first). The setting holds until a newer message arrives in or is sent from the thread; the
    answer carries the new `reply_version`. Shipmail SDK 0.6.7's body (`expected_version` with
    `done`) is accepted too. 404 for an unknown thread."""
    row = await _row(ctx)
    thread_id = ids.from_wire(ids.THREAD, ctx.path["thread_id"])
    return await inbox.update_reply_state(
        ctx.services, ctx.session, row, thread_id, target=ctx.body.target, expected_version=ctx.body.expected
    )
